"""Count reconciliation: a list's members in the community beside its target group in the marketing
platform, the difference explained as the seed's troubleshooting section asks (members unsubscribed
in the platform, malformed or invalid e-mail addresses, duplicate e-mail addresses in the community),
and, for a list that is not a target group, why."""

from __future__ import annotations

from core.lists import FOLDER, PREFIX, email_key, target_group_name, valid_email


def reconcile(list_name: str, members: list[dict], groups: list[dict] | None, subscribers: list[dict] | None,
              refreshed: bool | None = None) -> dict:
    """``members``: the community's (``RemoteId``, ``Email``); ``groups``: the platform's
    ``interest_target_group`` rows (None: the platform could not be read); ``subscribers``: its
    ``target_group_subscriber`` rows of the group."""
    tg = target_group_name(list_name)
    out: dict = {"list": list_name, "target_group": tg, "folder": FOLDER, "community_count": len(members)}
    malformed = [m for m in members if not valid_email(m.get("Email"))]
    by_email: dict[str, list[str]] = {}
    for m in members:
        if valid_email(m.get("Email")):
            by_email.setdefault(email_key(m["Email"]), []).append(m["RemoteId"])
    dups = {e: ids for e, ids in by_email.items() if len(ids) > 1}
    out["malformed_emails"] = [{"remote_id": m["RemoteId"], "email": m.get("Email")} for m in malformed]
    out["duplicate_emails"] = [{"email": e, "remote_ids": sorted(ids)} for e, ids in sorted(dups.items())]
    expected = len(by_email)
    out["expected_subscribers"] = expected
    if tg is None:
        out.update(appears=False, reasons=[f"the list's name does not begin with {PREFIX}: only lists named "
                                           f"'{PREFIX} ...' are offered to the marketing platform"])
        return out
    if groups is None:
        out.update(platform_count=None, reasons=["the marketing platform could not be read (no informz endpoint "
                                                 "for the tenant, or its partner API refused)"])
        return out
    named = [g for g in groups if g.get("target_group_name") == tg and g.get("is_deleted") != "true"]
    in_folder = [g for g in named if g.get("folder_name", FOLDER) == FOLDER]
    if not named:
        out.update(appears=False, platform_count=None, reasons=[
            "no target group of that name yet: Refresh Target Group List in the Online Community folder "
            "(Contacts > Groups), then Sync Target Group Now"])
        return out
    if not in_folder:
        out.update(appears=True, platform_count=None, reasons=[
            f"the target group is in folder {named[0].get('folder_name')!r}, not {FOLDER!r}: look there"])
        return out
    g = in_folder[0]
    out["appears"] = True
    out["target_group_id"] = g.get("target_group_id")
    subs = subscribers or []
    unsub = sorted(s["email"] for s in subs if s.get("status") != "subscribed")
    platform = sum(1 for s in subs if s.get("status") == "subscribed")
    out["platform_count"] = platform
    out["unsubscribed"] = unsub
    have = {email_key(s["email"]) for s in subs}
    missing = sorted(e for e in by_email if e not in have)
    extra = sorted(s["email"] for s in subs if email_key(s["email"]) not in by_email)
    out["not_synced_yet"] = missing
    out["not_in_community_list"] = extra
    explained = len(malformed) + sum(len(ids) - 1 for ids in dups.values()) + len(unsub)
    reasons = []
    if malformed:
        reasons.append(f"{len(malformed)} member(s) with a malformed or missing e-mail address (refused by the platform)")
    if dups:
        reasons.append(f"{sum(len(ids) - 1 for ids in dups.values())} member(s) share an e-mail address with another "
                       f"member (one subscriber each address)")
    if unsub:
        reasons.append(f"{len(unsub)} subscriber(s) unsubscribed in the marketing platform (not counted)")
    if missing or extra:
        reasons.append(f"{len(missing)} member(s) not synced yet, {len(extra)} subscriber(s) who left the list since "
                       f"the last sync: Resync Now")
    out["explained"] = explained
    out["difference"] = len(members) - platform
    out["reasons"] = reasons
    out["fully_explained"] = len(members) - platform == explained + len(missing) - len(extra) - \
        sum(1 for s in subs if s.get("status") != "subscribed" and email_key(s["email"]) not in by_email)
    return out
