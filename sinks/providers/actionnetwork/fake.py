"""A fake Action Network API v2 (OSDI, HAL+JSON), as strict as the documentation says the real one is.

From https://actionnetwork.org/docs/v2/ (people, person signup helper, background processing) and
``../shared/NEW-SYSTEMS.md`` section 3:

- ``GET /api/v2/`` answers the entry point (``motd``, ``_links``) **for any key**; every resource
  needs the ``OSDI-API-Token`` header, else 401 ``{"error": "API Key invalid or not present <key>"}``
  (the body echoes the key: the sink redacts it).
- ``GET /api/v2/people?page=&per_page=&filter=modified_date gt '…'``: at most 25 a page, in the
  order people were created (not by modification), ``_embedded["osdi:people"]``, no
  ``total_pages``/``total_records``, and a ``next`` link on every page up to the last one
  **included** (absent only on an empty page past the end).
- ``POST /api/v2/people/`` (the person signup helper): needs an email or a phone; matches an
  existing person by email, then by phone (one phone per person: a phone given to another person
  moves to them); a new person's email status defaults to subscribed and **mobile status to
  unsubscribed**; an existing person keeps statuses not passed; ``custom_fields`` merge;
  ``add_tags`` of unknown tags are ignored; ``identifiers`` merge; ``?background_processing=true``
  answers at once with an empty body. The answer is the person (``identifiers``,
  ``created_date == modified_date`` when created).
- ``GET/PUT /api/v2/people/{id}``: one person; PUT changes what it names (404 for an unknown id).
- ``GET /api/v2/tags`` (``osdi:tags``, with ``total_records``: other collections still carry it).
- 429 from the shared fault injection (no number is documented: "about 4 a second" is unconfirmed).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid

from aiohttp import web

from core.fakes import FaultyFake, fake_main

PER_PAGE = 25
_FILTER = re.compile(r"^\s*modified_date\s+(gt|lt|eq)\s+'([^']+)'\s*$")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def digits(phone: str) -> str:
    d = re.sub(r"\D", "", str(phone))
    return "1" + d if len(d) == 10 else d


class FakeActionNetwork(FaultyFake):
    def __init__(self, api_key: str = "an-fake-key", tags: tuple[str, ...] = ("volunteer", "sms")) -> None:
        self.api_key = api_key
        self.tag_names = tags
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.people: dict[str, dict] = {}        # id -> person, in creation order
        self.api_requests: list[dict] = []       # every resource call: method, path, status
        self._dates: dict[str, dt.datetime] = {}

    # ------------------------------------------------------------------ data
    def add_person(self, email: str | None = None, phone: str | None = None, given_name: str | None = None,
                   family_name: str | None = None, modified: dt.datetime | None = None, mobile_status="subscribed",
                   **custom) -> dict:
        """A person as if made in Action Network's own UI (``modified`` back-dates them)."""
        pid = str(uuid.uuid4())
        when = (modified or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        p = {"identifiers": [f"action_network:{pid}"], "created_date": when, "modified_date": when,
             "given_name": given_name, "family_name": family_name,
             "email_addresses": [{"primary": True, "address": email, "status": "subscribed"}] if email else [],
             "phone_numbers": [{"primary": True, "number": digits(phone), "number_type": "Mobile",
                                "status": mobile_status}] if phone else [],
             "postal_addresses": [], "custom_fields": dict(custom), "languages_spoken": ["en"]}
        self.people[pid] = p
        return p

    def by_email(self, email: str) -> dict | None:
        e = email.strip().lower()
        return next((p for p in self.people.values()
                     if any(a["address"].lower() == e for a in p["email_addresses"])), None)

    def by_phone(self, phone: str) -> dict | None:
        d = digits(phone)
        return next((p for p in self.people.values() if any(n["number"] == d for n in p["phone_numbers"])), None)

    @staticmethod
    def pid(p: dict) -> str:
        return next(i for i in p["identifiers"] if i.startswith("action_network:")).split(":", 1)[1]

    def _hal(self, request: web.Request, p: dict) -> dict:
        base = f"{request.scheme}://{request.host}/api/v2"
        pid = self.pid(p)
        return {**p, "_links": {"self": {"href": f"{base}/people/{pid}"},
                                "osdi:taggings": {"href": f"{base}/people/{pid}/taggings"}}}

    def _when(self, text: str) -> dt.datetime:
        t = self._dates.get(text)
        if t is None:
            t = self._dates[text] = _parse(text)
        return t

    # ------------------------------------------------------------------ plumbing
    def _refuse(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("OSDI-API-Token")
        if key != self.api_key:
            return web.json_response({"error": f"API Key invalid or not present {key or ''}".strip()}, status=401)
        return None

    def _log(self, request: web.Request, resp: web.Response, records: int = 0) -> web.Response:
        self.api_requests.append({"method": request.method, "path": request.path, "query": dict(request.query),
                                  "status": resp.status, "at": time.time()})
        self.log(resp.status, records)
        return resp

    async def _checks(self, request: web.Request) -> web.Response | None:
        fault = await self.faults()
        if fault is not None:
            return fault
        return self._refuse(request)

    # ------------------------------------------------------------------ routes
    async def handle_entry(self, request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}/api/v2"
        return web.json_response({"motd": "Welcome to the Action Network OSDI API (a fake)", "max_page_size": 25,
                                  "vendor_name": "Action Network", "osdi_version": "1.1.1",
                                  "_links": {"self": {"href": f"{base}/"},
                                             "osdi:people": {"href": f"{base}/people"},
                                             "osdi:tags": {"href": f"{base}/tags"},
                                             "osdi:person_signup_helper": {"href": f"{base}/people"},
                                             "curies": [{"name": "osdi", "templated": True,
                                                         "href": "https://actionnetwork.org/docs/v2/{rel}"}]}})

    async def handle_people(self, request: web.Request) -> web.Response:
        refused = await self._checks(request)
        if refused is not None:
            return self._log(request, refused)
        q = request.query
        try:
            page = max(1, int(q.get("page", "1")))
            per_page = min(PER_PAGE, max(1, int(q.get("per_page", str(PER_PAGE)))))
        except ValueError:
            return self._log(request, web.json_response({"error": "page and per_page are numbers"}, status=400))
        rows = list(self.people.values())
        if q.get("filter"):
            m = _FILTER.match(q["filter"])
            if not m:
                return self._log(request, web.json_response({"error": f"cannot filter by {q['filter']}"},
                                                            status=400))
            op, value = m.groups()
            try:
                bound = _parse(value)
            except ValueError:
                return self._log(request, web.json_response({"error": f"{value} is not a date"}, status=400))
            test = {"gt": lambda t: t > bound, "lt": lambda t: t < bound, "eq": lambda t: t == bound}[op]
            rows = [p for p in rows if test(self._when(p["modified_date"]))]
        chunk = rows[(page - 1) * per_page: page * per_page]
        base = f"{request.scheme}://{request.host}/api/v2/people"
        params = {k: v for k, v in q.items() if k not in ("page",)}

        def href(n: int) -> str:
            from urllib.parse import urlencode
            return f"{base}?{urlencode({**params, 'page': n})}"

        links = {"self": {"href": href(page)}, "osdi:people": [{"href": self._hal(request, p)["_links"]["self"]["href"]}
                                                              for p in chunk]}
        if chunk:  # present on every page with people, the last included; absent past the end
            links["next"] = {"href": href(page + 1)}
        if page > 1:
            links["previous"] = {"href": href(page - 1)}
        body = {"per_page": per_page, "page": page, "_links": links,
                "_embedded": {"osdi:people": [self._hal(request, p) for p in chunk]}}
        return self._log(request, web.json_response(body), len(chunk))

    async def handle_signup(self, request: web.Request) -> web.Response:
        refused = await self._checks(request)
        if refused is not None:
            return self._log(request, refused)
        try:
            body = await request.json()
        except ValueError:
            return self._log(request, web.json_response({"error": "JSON body expected"}, status=400))
        person = body.get("person") if isinstance(body, dict) else None
        if not isinstance(person, dict):
            return self._log(request, web.json_response({"error": "a person is required"}, status=400))
        emails = [e for e in person.get("email_addresses") or [] if isinstance(e, dict) and e.get("address")]
        phones = [n for n in person.get("phone_numbers") or [] if isinstance(n, dict) and n.get("number")]
        if len(phones) > 1:
            return self._log(request, web.json_response({"error": "only one phone number per person"}, status=400))
        if not emails and not phones:
            return self._log(request, web.json_response({"error": "an email address or a phone number is required"},
                                                        status=400))
        match = self.by_email(emails[0]["address"]) if emails else None
        phone_owner = self.by_phone(phones[0]["number"]) if phones else None
        now = _now()
        if match is None and phone_owner is not None:
            has_email = bool(phone_owner["email_addresses"])
            if not emails or not has_email:
                match = phone_owner  # the phone's person, or a phone-only record merged with this email
        created = match is None
        if created:
            pid = str(uuid.uuid4())
            match = {"identifiers": [f"action_network:{pid}"], "created_date": now, "modified_date": now,
                     "given_name": None, "family_name": None, "email_addresses": [], "phone_numbers": [],
                     "postal_addresses": [], "custom_fields": {}, "languages_spoken": ["en"]}
            self.people[pid] = match
        if phones:
            number = digits(phones[0]["number"])
            if phone_owner is not None and phone_owner is not match:  # one phone per person: it moves
                phone_owner["phone_numbers"] = []
                phone_owner["modified_date"] = now
            old = match["phone_numbers"][0] if match["phone_numbers"] else None
            status = phones[0].get("status") or (old["status"] if old and old["number"] == number else "unsubscribed")
            match["phone_numbers"] = [{"primary": True, "number": number, "number_type": "Mobile", "status": status}]
        for e in emails:
            found = next((a for a in match["email_addresses"] if a["address"].lower() == e["address"].lower()), None)
            if found is None:
                match["email_addresses"].append({"primary": not match["email_addresses"], "address": e["address"],
                                                 "status": e.get("status") or "subscribed"})
            elif e.get("status"):
                found["status"] = e["status"]
        for name in ("given_name", "family_name", "languages_spoken"):
            if person.get(name) is not None:
                match[name] = person[name]
        if person.get("postal_addresses"):
            match["postal_addresses"] = person["postal_addresses"]
        if isinstance(person.get("custom_fields"), dict):
            match["custom_fields"].update(person["custom_fields"])
        for ident in person.get("identifiers") or []:
            if isinstance(ident, str) and ident not in match["identifiers"]:
                match["identifiers"].append(ident)
        referrer = body.get("action_network:referrer_data")
        if isinstance(referrer, dict) and referrer.get("source") and created:
            match["source"] = referrer["source"]
        match["modified_date"] = now
        if created:
            match["created_date"] = now
        if request.query.get("background_processing") == "true":
            return self._log(request, web.json_response({}), 1)
        return self._log(request, web.json_response(self._hal(request, match)), 1)

    async def handle_person(self, request: web.Request) -> web.Response:
        refused = await self._checks(request)
        if refused is not None:
            return self._log(request, refused)
        p = self.people.get(request.match_info["id"])
        if p is None:
            return self._log(request, web.json_response(
                {"error": f"Couldn't find person with id = {request.match_info['id']}"}, status=404))
        if request.method == "PUT":
            try:
                body = await request.json()
            except ValueError:
                return self._log(request, web.json_response({"error": "JSON body expected"}, status=400))
            for name in ("given_name", "family_name", "postal_addresses", "languages_spoken"):
                if name in body:
                    p[name] = body[name]
            if isinstance(body.get("custom_fields"), dict):
                p["custom_fields"].update(body["custom_fields"])
            for ident in body.get("identifiers") or []:
                if isinstance(ident, str) and ident not in p["identifiers"]:
                    p["identifiers"].append(ident)
            if body.get("phone_numbers"):
                n = body["phone_numbers"][0]
                p["phone_numbers"] = [{"primary": True, "number": digits(n["number"]), "number_type": "Mobile",
                                       "status": n.get("status") or "unsubscribed"}]
            p["modified_date"] = _now()
        return self._log(request, web.json_response(self._hal(request, p)), 1)

    async def handle_tags(self, request: web.Request) -> web.Response:
        refused = await self._checks(request)
        if refused is not None:
            return self._log(request, refused)
        base = f"{request.scheme}://{request.host}/api/v2/tags"
        tags = [{"name": t, "identifiers": [f"action_network:{uuid.uuid5(uuid.NAMESPACE_URL, t)}"],
                 "_links": {"self": {"href": f"{base}/{uuid.uuid5(uuid.NAMESPACE_URL, t)}"}}} for t in self.tag_names]
        return self._log(request, web.json_response({"total_pages": 1, "per_page": 25, "page": 1,
                                                     "total_records": len(tags), "_links": {},
                                                     "_embedded": {"osdi:tags": tags}}))

    def listing(self) -> list:
        return list(self.people.values())

    def stats(self) -> dict:
        return {**super().stats(), "people": len(self.people)}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v2/", self.handle_entry)
        app.router.add_get("/api/v2", self.handle_entry)
        app.router.add_get("/api/v2/people", self.handle_people)
        app.router.add_get("/api/v2/people/", self.handle_people)
        app.router.add_post("/api/v2/people", self.handle_signup)
        app.router.add_post("/api/v2/people/", self.handle_signup)
        app.router.add_get("/api/v2/people/{id}", self.handle_person)
        app.router.add_put("/api/v2/people/{id}", self.handle_person)
        app.router.add_get("/api/v2/tags", self.handle_tags)
        self.listing_routes(app)
        return app


    def seed(self, count: int, optin_field: str = "mobile_opt_in") -> None:
        """``count`` fictitious people (``…@example.org``, 202-555-01xx numbers): most with a mobile
        number and the opt-in checkbox, every fifth not opted in, every seventh with no phone."""
        for i in range(count):
            phone = None if i % 7 == 6 else f"{202 + i // 10000}555{i % 10000:04d}" if count > 100 \
                else f"20255501{i % 100:02d}"
            self.add_person(f"supporter{i + 1}@example.org", phone, f"Supporter{i + 1}", "Example",
                            **{optin_field: i % 5 != 4})


def main() -> None:
    import os

    def make(args):
        fake = FakeActionNetwork(os.environ.get("ACTIVITY_SYNC_ACTIONNETWORK_KEY", "an-fake-key"))
        fake.seed(args.seed)
        return fake

    fake_main("sinks.providers.actionnetwork.fake", "A fake Action Network API v2", 8097, make,
              "fake Action Network on {base_url}/api/v2/",
              extra=lambda ap: ap.add_argument("--seed", type=int, default=0, help="fictitious people to start with"))


if __name__ == "__main__":
    main()


__all__ = ["FakeActionNetwork", "digits"]
