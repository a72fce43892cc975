"use strict";
// The admin page: plain DOM, no framework, no request anywhere but this server's /api/v1.
// Text from the API is only ever set as textContent, never parsed as HTML.

const state = { key: sessionStorage.getItem("activity-sync-key") || "", providers: [], activities: [],
                endpoints: [], tab: "endpoints", timer: null, replayPlan: null };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

class ApiError extends Error {
  constructor(status, body) { super(body.error || `HTTP ${status}`); this.status = status; this.field = body.field; }
}

async function api(method, path, body) {
  const opts = { method, headers: { "Authorization": `Bearer ${state.key}` } };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const resp = await fetch(`/api/v1${path}`, opts);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function say(text, bad = false) {
  const m = document.getElementById("message");
  m.textContent = text; m.className = bad ? "bad" : "";
}

function when(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z" : "—"; }

// ---------------------------------------------------------------- dialog
function openDialog(title, body, okText, onOk) {
  const d = document.getElementById("dialog");
  document.getElementById("dialog-title").textContent = title;
  const holder = document.getElementById("dialog-body");
  holder.replaceChildren(body);
  document.getElementById("dialog-error").textContent = "";
  const ok = document.getElementById("dialog-ok");
  ok.textContent = okText;
  ok.hidden = !onOk;
  ok.onclick = async (ev) => {
    ev.preventDefault();
    for (const x of holder.querySelectorAll(".invalid")) x.classList.remove("invalid");
    try { await onOk(); d.close(); }
    catch (e) {
      document.getElementById("dialog-error").textContent = e.message;
      if (e.field) {
        const f = holder.querySelector(`[data-field="${CSS.escape(e.field)}"]`) ||
                  holder.querySelector(`[data-field="${CSS.escape(e.field.split(".").slice(0, 2).join("."))}"]`);
        if (f) { f.classList.add("invalid"); f.scrollIntoView({ block: "center" }); f.focus(); }
      }
    }
  };
  document.getElementById("dialog-cancel").onclick = (ev) => { ev.preventDefault(); d.close(); };
  d.showModal();
}

// ---------------------------------------------------------------- endpoints
async function loadEndpoints() {
  state.endpoints = await api("GET", "/endpoints");
  const rows = state.endpoints.map((ep) => el("tr", { dataset: { endpoint: ep.name } },
    el("td", { text: ep.name }), el("td", { text: ep.provider }), el("td", { text: ep.provider_type }),
    el("td", { text: ep.tenants.join(", ") }),
    el("td", {}, el("button", { class: `toggle ${ep.enabled ? "on" : "off"}`, "data-testid": `toggle-${ep.name}`,
      text: ep.enabled ? "Enabled" : "Disabled",
      onclick: () => act(() => api("PATCH", `/endpoints/${encodeURIComponent(ep.name)}`, { enabled: !ep.enabled }),
                         `${ep.name} ${ep.enabled ? "disabled" : "enabled"}`, loadEndpoints) })),
    el("td", { text: `${ep.subscriptions.active} / ${ep.subscriptions.inactive}`,
               "data-testid": `counts-${ep.name}` }),
    el("td", {}, el("button", { "data-testid": `edit-${ep.name}`, text: "Edit", onclick: () => endpointDialog(ep) }), " ",
      el("button", { "data-testid": `delete-${ep.name}`, text: "Delete", onclick: () => deleteDialog(ep) }))));
  document.getElementById("endpoint-rows").replaceChildren(...rows);
  filterEndpoints();
}

function filterEndpoints() {
  const q = document.getElementById("ep-filter").value.trim().toLowerCase();
  let n = 0;
  for (const tr of document.querySelectorAll("#endpoint-rows tr[data-endpoint]")) {
    const ep = state.endpoints.find((e) => e.name === tr.dataset.endpoint);
    const hay = ep ? `${ep.name} ${ep.provider} ${ep.tenants.join(" ")}`.toLowerCase() : "";
    tr.hidden = !!q && !hay.includes(q);
    if (!tr.hidden) n += 1;
  }
  document.getElementById("endpoint-rows").querySelector("tr.empty-row")?.remove();
  if (!n) document.getElementById("endpoint-rows").append(el("tr", { class: "empty-row" }, el("td", { colspan: 7, class: "empty",
    "data-testid": "ep-empty", text: state.endpoints.length ? "no endpoint matches" : "no endpoint yet: Create one" })));
  document.getElementById("ep-count").textContent = state.endpoints.length
    ? `${n} of ${state.endpoints.length} endpoint(s)` : "";
}

async function act(fn, done, reload) {
  try { await fn(); say(done); if (reload) await reload(); }
  catch (e) { say(e.message, true); }
}

function settingsForm(provider, values) {
  const p = state.providers.find((x) => x.name === provider);
  const box = el("fieldset", { "data-testid": "settings-form" }, el("legend", { text: `${provider} settings` }));
  if (!p || !p.settings_schema) { box.append(el("p", { text: p && p.error ? p.error : "no settings" })); return box; }
  const schema = p.settings_schema;
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const field = `settings.${name}`;
    const value = values[name] !== undefined ? values[name] : prop.default;
    const types = [prop.type, ...(prop.anyOf || []).map((x) => x.type)].filter(Boolean);
    const enumValues = prop.enum || (prop.anyOf || []).flatMap((x) => x.enum || (x.const !== undefined ? [x.const] : []));
    let input;
    const orValue = enumValues.length && (prop.anyOf || []).some((x) => x.$ref || x.type === "object");
    if (orValue) {  // a word or a value, e.g. schedule: realtime, or every 30m
      const shown = value && typeof value === "object"
        ? Object.entries(value).map(([k, v]) => `${k} ${v}`).join(" ") : (value === undefined || value === null ? "" : value);
      input = el("input", { type: "text", name, "data-field": field, "data-kind": "text", value: shown,
                            placeholder: `${enumValues.join(" or ")}, or e.g. every 30m` });
    } else if (enumValues.length) {
      input = el("select", { name, "data-field": field, "data-kind": "enum" },
        el("option", { value: "", text: "" }),
        enumValues.map((v) => el("option", { value: v, text: v, selected: v === value })));
    } else if (types.includes("boolean") && !types.includes("object")) {
      input = el("input", { type: "checkbox", name, "data-field": field, "data-kind": "bool", checked: value === true });
    } else if (types.includes("integer") || types.includes("number")) {
      if (types.includes("object") || types.includes("array")) {
        input = el("textarea", { name, "data-field": field, "data-kind": "json" });
        input.value = value === undefined || value === null ? "" : JSON.stringify(value);
      } else {
        input = el("input", { type: "number", step: "any", name, "data-field": field, "data-kind": "number",
                              value: value === undefined || value === null ? "" : value });
      }
    } else if (types.includes("object") || types.includes("array") || prop.$ref || (prop.anyOf || []).some((x) => x.$ref)) {
      input = el("textarea", { name, "data-field": field, "data-kind": "json" });
      input.value = value === undefined || value === null ? "" : JSON.stringify(value);
    } else {
      input = el("input", { type: "text", name, "data-field": field, "data-kind": "text",
                            value: value === undefined || value === null ? "" : value });
    }
    input.dataset.testid = `setting-${name}`;
    if (input.dataset.kind === "json") {  // checked as you type
      input.addEventListener("input", () => {
        try { if (input.value.trim()) JSON.parse(input.value); input.classList.remove("invalid"); input.title = ""; }
        catch (e) { input.classList.add("invalid"); input.title = `not JSON: ${e.message}`; }
      });
    }
    // only what the operator sets is stored: a default left as it is stays a default (a later change applies)
    input.dataset.stored = values[name] !== undefined ? "1" : "";
    if (prop.default !== undefined) input.dataset.default = JSON.stringify(prop.default);
    const secret = prop["x-secret-ref"] ? " (where a secret is: never the secret itself)" : "";
    const help = `${prop.description || ""}${secret}`;
    box.append(el("label", { class: "setting" },
      el("span", { class: "label" }, el("strong", { text: humanLabel(name) }), required.has(name) ? " *" : "",
        " ", el("code", { class: "raw-name", text: name })), input,
      help.trim() ? el("span", { class: "help", text: help.trim() }) : null,
      prop.default !== undefined && prop.default !== null && prop.default !== ""
        ? el("span", { class: "help", text: `default: ${typeof prop.default === "string" ? prop.default : JSON.stringify(prop.default)}` }) : null));
  }
  return box;
}

const UNITS = { s: "seconds", ms: "ms", per_s: "per second", mb: "MB", kb: "KB" };

function humanLabel(name) {
  // limit_backoff_s -> "Limit backoff (seconds)"; hmac_secret_env -> "Hmac secret (environment variable)"
  let base = name, unit = "";
  for (const [suffix, what] of [["_per_s", UNITS.per_s], ["_ms", UNITS.ms], ["_s", UNITS.s], ["_env", "environment variable"],
                                ["_file", "file"], ["_mb", UNITS.mb], ["_kb", UNITS.kb]]) {
    if (base.endsWith(suffix) && base.length > suffix.length) { base = base.slice(0, -suffix.length); unit = what; break; }
  }
  const words = base.split("_").map((w) => ({ url: "URL", id: "ID", api: "API", hmac: "HMAC", oauth: "OAuth", ssl: "SSL",
                                              json: "JSON", xml: "XML", dsn: "DSN", ca: "CA", tls: "TLS", soap: "SOAP" }[w] || w));
  const text = words.join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1) + (unit ? ` (${unit})` : "");
}

function readSettings(box) {
  const out = {};
  for (const input of box.querySelectorAll("[data-field^='settings.']")) {
    const name = input.name, kind = input.dataset.kind;
    let value;
    if (kind === "bool") value = input.checked;
    else {
      const raw = input.value.trim();
      if (raw === "") continue;
      if (kind === "number") value = Number(raw);
      else if (kind === "json") {
        try { value = JSON.parse(raw); }
        catch { const e = new Error(`settings.${name}: not JSON`); e.field = `settings.${name}`; throw e; }
      } else value = raw;
    }
    const atDefault = input.dataset.default !== undefined && JSON.stringify(value) === input.dataset.default;
    if (atDefault && !input.dataset.stored) continue;  // left at its default: not written
    out[name] = value;
  }
  return out;
}

function endpointDialog(ep) {
  const creating = !ep;
  // a tenant key's new endpoint is its own tenants' (a key of every tenant starts from *)
  ep = ep || { name: "", enabled: true, provider_type: "membership", provider: "webhook",
               tenants: state.me && !state.me.tenants.includes("*") ? state.me.tenants : ["*"],
               settings: {}, subscribed_codes: [] };
  const enabled = el("input", { type: "checkbox", checked: ep.enabled, "data-field": "enabled", "data-testid": "ep-enabled" });
  const name = el("input", { type: "text", value: ep.name, "data-field": "name", "data-testid": "ep-name", required: true });
  const ptype = el("select", { "data-field": "provider_type", "data-testid": "ep-provider-type" },
    ["membership", "activity-history"].map((t) => el("option", { value: t, text: t === "membership" ?
      "Membership Provider" : "Activity History", selected: t === ep.provider_type })));
  const provider = el("select", { "data-field": "provider", "data-testid": "ep-provider" });
  const tenant = el("input", { type: "text", value: ep.tenants.join(","), "data-field": "tenant", "data-testid": "ep-tenant" });
  const settingsHolder = el("div");
  const fillProviders = () => {
    const choices = state.providers.filter((p) => p.provider_types.includes(ptype.value));
    provider.replaceChildren(...choices.map((p) => el("option", { value: p.name, text: p.name,
                                                                  selected: p.name === ep.provider })));
    settingsHolder.replaceChildren(settingsForm(provider.value, provider.value === ep.provider ? ep.settings : {}));
  };
  ptype.onchange = fillProviders;
  provider.onchange = () => settingsHolder.replaceChildren(settingsForm(provider.value, {}));
  fillProviders();
  const subs = new Set(ep.subscribed_codes);
  const checklist = el("div", { class: "checklist", "data-field": "subscriptions", "data-testid": "ep-subscriptions" },
    state.activities.map((a) => el("label", { dataset: { code: a.activity_code.toLowerCase(), category: a.category.toLowerCase() } },
      el("input", { type: "checkbox", value: a.activity_code,
      checked: subs.has(a.activity_code), "data-testid": `ep-sub-${a.activity_code}` }),
      ` ${a.activity_code} (${a.category})`)));
  // a long checklist: search, select all or none of what is shown, the count ticked
  const count = el("span", { class: "count", "data-testid": "ep-sub-count" });
  const search = el("input", { type: "search", placeholder: "search codes or categories", "data-testid": "ep-sub-search" });
  const shown = () => [...checklist.querySelectorAll("label")].filter((l) => !l.hidden);
  const recount = () => { count.textContent = `${checklist.querySelectorAll("input:checked").length} of ${state.activities.length} ticked`
    + (search.value ? `, ${shown().length} shown` : ""); };
  search.addEventListener("input", () => {
    const q = search.value.trim().toLowerCase();
    for (const l of checklist.querySelectorAll("label")) l.hidden = !!q && !l.dataset.code.includes(q) && !l.dataset.category.includes(q);
    if (!shown().length) checklist.dataset.empty = "no activity code matches"; else delete checklist.dataset.empty;
    recount();
  });
  checklist.addEventListener("change", recount);
  const tickAll = (on) => (ev) => { ev.preventDefault(); for (const l of shown()) l.querySelector("input").checked = on; recount(); };
  const tools = el("div", { class: "bar" }, search, " ",
    el("button", { type: "button", text: "Select all shown", "data-testid": "ep-sub-all", onclick: tickAll(true) }), " ",
    el("button", { type: "button", text: "Clear shown", "data-testid": "ep-sub-none", onclick: tickAll(false) }), " ", count);
  recount();
  const body = el("div", {}, el("label", {}, enabled, " Enabled"), el("label", {}, "Name * ", name),
    el("label", {}, "Provider type * ", ptype), el("label", {}, "Provider * ", provider),
    el("label", {}, "Tenant (TenantCode, several separated by commas, or *) ", tenant), settingsHolder,
    el("p", { text: "Activity subscriptions" }), tools, checklist);
  openDialog(creating ? "Create endpoint" : `Edit endpoint ${ep.name}`, body, "Save", async () => {
    const tenants = tenant.value.split(",").map((t) => t.trim()).filter(Boolean);
    const payload = { name: name.value.trim(), enabled: enabled.checked, provider_type: ptype.value,
      provider: provider.value, tenant: tenants.length === 1 ? tenants[0] : tenants,
      settings: readSettings(settingsHolder),
      subscriptions: [...checklist.querySelectorAll("input:checked")].map((c) => c.value) };
    if (creating) await api("POST", "/endpoints", payload);
    else await api("PUT", `/endpoints/${encodeURIComponent(ep.name)}`, payload);
    say(`endpoint ${payload.name} saved`);
    await loadEndpoints();
  });
}

async function deleteDialog(ep) {
  let plan;
  try { plan = await api("DELETE", `/endpoints/${encodeURIComponent(ep.name)}?dry_run=true`); }
  catch (e) { say(e.message, true); return; }
  const body = el("p", { "data-testid": "delete-summary",
    text: `Delete ${ep.name}? This also removes its ${plan.subscriptions} activity subscription(s).` });
  openDialog(`Delete endpoint ${ep.name}`, body, "Delete", async () => {
    const done = await api("DELETE", `/endpoints/${encodeURIComponent(ep.name)}`);
    say(`endpoint ${ep.name} deleted with ${done.subscriptions} subscription(s)`);
    await loadEndpoints();
  });
}

// ---------------------------------------------------------------- subscriptions
function selected(id) { return [...document.getElementById(id).selectedOptions].map((o) => o.value); }

let subscriptionsAsked = 0;  // each keystroke asks again: only the newest answer is shown

async function loadSubscriptions() {
  const asked = ++subscriptionsAsked;
  const q = new URLSearchParams();
  const name = document.getElementById("f-name").value.trim();
  if (name) q.set("name", name);
  for (const e of selected("f-endpoint")) q.append("endpoint", e);
  for (const c of selected("f-category")) q.append("category", c);
  q.set("subscribed", document.getElementById("f-subscribed").value);
  const rows = await api("GET", `/subscriptions?${q}`);
  if (asked !== subscriptionsAsked) return;  // an older filter's answer, come after a newer one's
  document.getElementById("subscription-rows").replaceChildren(...rows.map((r) => el("tr",
    { dataset: { code: r.activity_code }, "data-testid": `sub-row-${r.activity_code}` },
    el("td", { text: r.activity_code }), el("td", { text: r.category }),
    el("td", {}, r.endpoints.map((e) => el("span", {
      class: `badge ${!e.endpoint_enabled ? "ep-off" : !e.enabled ? "sub-off" : ""}`,
      title: !e.endpoint_enabled ? "endpoint disabled" : !e.enabled ? "subscription disabled" : "active",
      text: `${e.endpoint}${!e.enabled ? " ⓘ subscription disabled" : ""}${!e.endpoint_enabled ? " ⚠ endpoint disabled" : ""}` }))),
    el("td", {}, el("button", { text: "Edit", "data-testid": `sub-edit-${r.activity_code}`,
                                onclick: () => subscriptionDialog(r) }), " ",
      el("button", { text: "Code…", title: "the activity code itself: category, who it is about, properties",
                     "data-testid": `code-edit-${r.activity_code}`, onclick: () => activityCodeDialog(r.activity_code) })))));
  document.getElementById("sub-count").textContent = rows.length ? `${rows.length} activity code(s)` : "";
  if (!rows.length) document.getElementById("subscription-rows").replaceChildren(el("tr", {},
    el("td", { colspan: 4, class: "empty", text: "no activity code matches the filters" })));
}

function fillFilters() {
  const epSel = document.getElementById("f-endpoint");
  const keep = new Set(selected("f-endpoint"));
  epSel.replaceChildren(...state.endpoints.map((e) => el("option", { value: e.name, text: e.name, selected: keep.has(e.name) })));
  const catSel = document.getElementById("f-category");
  const keepCats = new Set(selected("f-category"));
  const cats = [...new Set(state.activities.map((a) => a.category))].sort();
  catSel.replaceChildren(...cats.map((c) => el("option", { value: c, text: c, selected: keepCats.has(c) })));
}

function activityCodeDialog(code) {
  const a = code ? state.activities.find((x) => x.activity_code === code) : null;
  const list = (v) => (v || []).join(", ");
  const name = el("input", { type: "text", value: code || "", "data-field": "code", "data-testid": "code-name",
                             placeholder: "e.g. WebinarAttend", readonly: !!code });
  const cat = el("select", { "data-field": "category", "data-testid": "code-category" },
    [...new Set([...state.activities.map((x) => x.category), ...(state.categories || [])])].sort()
      .map((c) => el("option", { value: c, text: c, selected: a && a.category === c })));
  const who = el("input", { type: "text", value: list(a && a.customer_key), "data-field": "customer_key",
                            "data-testid": "code-customer-key", placeholder: "e.g. AttendeeExternalKey" });
  const props = el("textarea", { "data-field": "properties", "data-testid": "code-properties",
                                 placeholder: "e.g. AttendeeExternalKey, WebinarTitle, WebinarDate" });
  props.value = list(a && a.properties);
  const desc = el("textarea", { "data-field": "description", "data-testid": "code-description", maxlength: 2000 });
  desc.value = a && a.origin === "defined" ? a.default_description : "";
  const split = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);
  const body = el("div", {},
    el("label", {}, "Activity code * ", name), el("label", {}, "Category * ", cat),
    el("label", {}, "Who the activity is about: the properties holding the member's customer ID, first present wins ", who),
    el("label", {}, "Properties (the merge variables, besides the common ones) ", props),
    el("label", {}, "Default description (a template over those properties) ", desc),
    a && a.origin === "defined" ? el("button", { type: "button", class: "danger", "data-testid": "code-retire",
      text: a.bundled ? "Back to the bundled definition" : "Retire this code",
      onclick: async (ev) => { ev.preventDefault();
        try { await api("DELETE", `/activities/${encodeURIComponent(code)}`); say(`${code} retired`);
              document.getElementById("dialog").close(); await refreshActivities(); }
        catch (x) { document.getElementById("dialog-error").textContent = x.message; } } }) : null);
  openDialog(code ? `Activity code ${code}` : "Add activity code", body, "Save", async () => {
    const c = name.value.trim();
    await api("PUT", `/activities/${encodeURIComponent(c)}`, { category: cat.value, customer_key: split(who.value),
      properties: split(props.value), ...(desc.value.trim() ? { description: desc.value } : {}) });
    say(`activity code ${c} saved`);
    await refreshActivities();
  });
}

async function refreshActivities() {
  state.activities = await api("GET", "/activities");
  fillFilters();
  await loadSubscriptions();
}

function insertAtCursor(area, text) {
  const start = area.selectionStart ?? area.value.length, end = area.selectionEnd ?? start;
  area.value = area.value.slice(0, start) + text + area.value.slice(end);
  area.selectionStart = area.selectionEnd = start + text.length;
  area.focus();
}

function subscriptionDialog(row) {
  const list = el("div", { "data-testid": "sub-endpoints" });
  const editor = el("div", { "data-testid": "sub-editor" });
  const refresh = async () => {
    const fresh = (await api("GET", `/subscriptions?name=${encodeURIComponent(row.activity_code)}`))
      .find((x) => x.activity_code === row.activity_code);
    row.endpoints = fresh ? fresh.endpoints : [];
    render();
    await loadSubscriptions();
  };
  const remove = async (e) => {
    await api("DELETE", `/subscriptions/${encodeURIComponent(row.activity_code)}/${encodeURIComponent(e.endpoint)}`);
    say(`${row.activity_code} → ${e.endpoint} removed`);
    editor.replaceChildren();
    await refresh();
  };
  const render = () => list.replaceChildren(...(row.endpoints.length ? row.endpoints.map((e) => el("p", {},
    `${e.endpoint}${e.enabled ? "" : " (subscription disabled)"}${e.endpoint_enabled ? "" : " (endpoint disabled)"} `,
    el("button", { text: "Edit", "data-testid": `sub-endpoint-edit-${e.endpoint}`, onclick: (ev) => { ev.preventDefault(); edit(e); } }),
    " ",
    el("button", { text: "Remove", class: "danger", "data-testid": `sub-endpoint-remove-${e.endpoint}`,
                   onclick: (ev) => { ev.preventDefault(); remove(e).catch((x) => say(x.message, true)); } })))
    : [el("p", { class: "empty", text: "No endpoint receives this activity: add one below." })]));
  const free = state.endpoints.filter((e) => !row.endpoints.some((x) => x.endpoint === e.name));
  const addSel = el("select", { "data-testid": "sub-add-endpoint" }, el("option", { value: "", text: "Add endpoint…" }),
    free.map((e) => el("option", { value: e.name, text: e.name })));
  addSel.onchange = () => { if (addSel.value) edit({ endpoint: addSel.value, enabled: true,
    description: row.default_description, writeback_code1: null, writeback_code2: null, endpoint_enabled:
    (state.endpoints.find((x) => x.name === addSel.value) || {}).enabled }); };
  const edit = (e) => {
    const en = el("input", { type: "checkbox", checked: e.enabled, "data-field": "enabled", "data-testid": "sub-enabled" });
    const desc = el("textarea", { "data-field": "description", "data-testid": "sub-description", maxlength: 2000 });
    desc.value = e.description;
    const c1 = el("input", { type: "text", value: e.writeback_code1 || "", "data-field": "writeback_code1", "data-testid": "sub-code1" });
    const c2 = el("input", { type: "text", value: e.writeback_code2 || "", "data-field": "writeback_code2", "data-testid": "sub-code2" });
    const out = el("p", { "data-testid": "sub-preview-result" });
    const err = el("p", { class: "error", "data-testid": "sub-error", role: "alert" });
    const note = e.endpoint_enabled === false ? el("p", { class: "error", text: "This endpoint is disabled: enable it on the Endpoints tab." }) : null;
    editor.replaceChildren(el("fieldset", {}, el("legend", { text: `${row.activity_code} → ${e.endpoint}` }), note,
      el("label", {}, en, " Enabled?"),
      el("label", {}, "Activity description (at most 500 characters before merging) ", desc),
      el("p", { class: "vars", "data-testid": "sub-vars" }, "Merge variables (click to insert): ",
        row.merge_variables.map((v) => el("button", { type: "button", class: "chip", text: `{${v}}`,
          "data-testid": `sub-var-${v}`, onclick: (ev) => { ev.preventDefault(); insertAtCursor(desc, `{${v}}`); } }))),
      el("label", {}, "Write-back code 1 ", c1), el("label", {}, "Write-back code 2 ", c2),
      el("button", { text: "Preview", "data-testid": "sub-preview", onclick: async (ev) => { ev.preventDefault();
        try { const p = await api("POST", "/preview", { activity_code: row.activity_code, description: desc.value, endpoint: e.endpoint });
              out.textContent = p.rendered === null ? p.note : `Preview (${p.activity_key}): ${p.rendered}`; err.textContent = ""; }
        catch (x) { err.textContent = x.message; } } }), " ",
      el("button", { text: "Save subscription", "data-testid": "sub-save", onclick: async (ev) => { ev.preventDefault();
        for (const x of editor.querySelectorAll(".invalid")) x.classList.remove("invalid");
        try {
          await api("PUT", `/subscriptions/${encodeURIComponent(row.activity_code)}/${encodeURIComponent(e.endpoint)}`,
            { enabled: en.checked, description: desc.value, writeback_code1: c1.value || null, writeback_code2: c2.value || null });
          err.textContent = ""; say(`${row.activity_code} → ${e.endpoint} saved`);
          editor.replaceChildren();
          await refresh();
        } catch (x) {
          err.textContent = x.message;
          const f = x.field && editor.querySelector(`[data-field="${CSS.escape(x.field)}"]`);
          if (f) f.classList.add("invalid");
        } } }), out, err));
  };
  render();
  openDialog(`Edit subscription: ${row.activity_code}`, el("div", {}, list, addSel, editor), "Close", async () => {});
}

// ---------------------------------------------------------------- status, dead letters, audit
async function loadStatus() {
  const rows = await api("GET", "/status");
  document.getElementById("status-rows").replaceChildren(...rows.map((s) => el("tr", { "data-testid": `status-${s.endpoint}` },
    el("td", { text: `${s.endpoint}${s.enabled ? "" : " (disabled)"}${s.workers ? "" : " — no worker reporting"}` }),
    el("td", { text: String(s.delivered), "data-testid": `delivered-${s.endpoint}` }),
    el("td", { text: Object.values(s.retrying).join(" / "), "data-testid": `retrying-${s.endpoint}` }),
    el("td", { text: String(s.dead), "data-testid": `dead-${s.endpoint}` }),
    el("td", { text: s.lag === null ? "—" : String(s.lag) }),
    el("td", { text: when(s.last_success_at) }),
    el("td", { text: !s.last_error ? "—"
                 // an error that deliveries have got past since is history, not the state: say so, briefly
                 : (s.last_success_at && s.last_success_at > s.last_error_at)
                   ? `— (delivering again; last error ${when(s.last_error_at)})`
                   : `${when(s.last_error_at)} ${s.last_error_class}: ${s.last_error}`,
               "data-testid": `last-error-${s.endpoint}` }),
    el("td", { text: s.held_back ? `${s.held_back.reason} until ${when(s.held_back.until)}` : (s.paused || "no") }))));
  const sources = await api("GET", "/sources/status");
  document.getElementById("source-rows").replaceChildren(...sources.map((s) => el("tr", { "data-testid": `source-${s.source}` },
    el("td", { text: `${s.source} (${s.kind}, ${s.tenant})${s.enabled ? "" : " (disabled)"}` }),
    el("td", { text: s.cursor ? `${s.cursor} / ${s.cursor_id}` : "— (not polled yet)", "data-testid": `source-cursor-${s.source}` }),
    el("td", { text: s.lag_s === null ? "—" : `${Math.round(s.lag_s)} s`, "data-testid": `source-lag-${s.source}` }),
    el("td", { text: `${s.records} / ${s.activities}`, "data-testid": `source-counts-${s.source}` }),
    el("td", { text: when(s.last_caught_up) }))));
  document.getElementById("sources-table").hidden = sources.length === 0;
}

async function loadDead() {
  const sel = document.getElementById("d-endpoint");
  const keep = sel.value;
  sel.replaceChildren(el("option", { value: "", text: "All endpoints" }),
    ...state.endpoints.map((e) => el("option", { value: e.name, text: e.name, selected: e.name === keep })));
  const q = sel.value ? `?endpoint=${encodeURIComponent(sel.value)}` : "";
  const rows = await api("GET", `/dead-letters${q}`);
  document.getElementById("dead-rows").replaceChildren(...rows.map((d) => el("tr", { "data-testid": `dead-row-${d.activity_key}` },
    el("td", {}, el("input", { type: "checkbox", value: d.activity_key, "data-endpoint": d.endpoint || "",
                               "data-testid": `dead-select-${d.activity_key}`, disabled: d.replayed })),
    el("td", { text: d.endpoint || "" }), el("td", { text: d.activity_key }), el("td", { text: d.reason }),
    el("td", { text: String(d.attempts) }), el("td", { text: when(d.first_failure_at) }),
    el("td", { text: d.last_error }), el("td", { text: d.replayed ? "yes" : "" }))));
  if (!rows.length) document.getElementById("dead-rows").replaceChildren(el("tr", {}, el("td", { colspan: 8,
    class: "empty", text: sel.value ? `no dead letters of ${sel.value}` : "no dead letters" })));
  state.replayPlan = null;
  state.deadPage = 0;
  showDeadPage();
  document.getElementById("d-replay").disabled = true;
}

const DEAD_PAGE = 50;

function showDeadPage() {
  // paged by hiding rows: what is ticked on another page stays ticked (and is replayed)
  const trs = [...document.querySelectorAll("#dead-rows tr[data-testid^='dead-row-']")];
  const pages = Math.max(1, Math.ceil(trs.length / DEAD_PAGE));
  state.deadPage = Math.min(Math.max(0, state.deadPage || 0), pages - 1);
  trs.forEach((tr, i) => { tr.hidden = Math.floor(i / DEAD_PAGE) !== state.deadPage; });
  const first = trs.length ? state.deadPage * DEAD_PAGE + 1 : 0, last = Math.min(trs.length, (state.deadPage + 1) * DEAD_PAGE);
  const ticked = document.querySelectorAll("#dead-rows input:checked").length;
  document.getElementById("d-page").textContent = `rows ${first}–${last} of ${trs.length}` + (ticked ? `, ${ticked} ticked` : "");
  document.getElementById("d-prev").disabled = state.deadPage === 0;
  document.getElementById("d-next").disabled = state.deadPage >= pages - 1;
}

function replayBody() {
  // exactly the rows ticked, whichever endpoints they belong to
  const checked = [...document.querySelectorAll("#dead-rows input:checked")];
  return { rows: checked.map((c) => ({ endpoint: c.dataset.endpoint, activity_key: c.value })) };
}

function planText(plan, verb) {
  const lines = [`${verb}: ${plan[verb === "dry run" ? "would_replay" : "replayed"]} ${verb === "dry run" ? "would be replayed" : ""}`.trim()
                 + `, ${plan.not_replayed} not`];
  for (const it of plan.items.filter((i) => i.action !== "replay"))
    lines.push(`${it.endpoint} ${it.activity_key}: not replayed (${it.reason || it.action})`);
  return lines.join("\n");
}

async function loadAudit() {
  const rows = await api("GET", "/audit");
  document.getElementById("audit-rows").replaceChildren(...rows.map((a) => el("tr", {},
    el("td", { text: when(a.at) }), el("td", { text: `${a.key_id} (${a.role})` }), el("td", { text: a.action }),
    el("td", { text: a.target }), el("td", { text: (a.tenants || []).join(", ") }),
    el("td", { "data-testid": "audit-changes" }, (a.changes || []).length ? el("ul", { class: "changes" },
      a.changes.map((c) => el("li", {}, el("code", { text: c.field }), ": ",
        el("span", { class: "before", text: auditValue(c.before) }), " → ", el("span", { class: "after", text: auditValue(c.after) }))))
      : el("span", { class: "empty", text: "—" })))));
  function auditValue(v) { return v === null || v === undefined ? "(none)" : typeof v === "string" ? v : JSON.stringify(v); }
}

async function loadSync() {
  const runs = await api("GET", "/anmc/report?limit=50");
  document.getElementById("sync-rows").replaceChildren(...runs.map((r, i) => el("tr", { "data-testid": `sync-run-${i}` },
    el("td", { text: r.at ? when(r.at) : r.run }), el("td", { text: r.sync || "—" }), el("td", { text: r.side || "—" }),
    el("td", { text: r.read === null ? "—" : `${r.read} / ${r.changes}` }),
    el("td", { text: Object.entries(r.outcomes).map(([k, v]) => `${k} ${v}`).join(", "),
               title: r.profiles.map((p) => `${p.profile} ${p.outcome}${p.detail ? " (" + p.detail + ")" : ""}`).join("\n"),
               "data-testid": `sync-outcomes-${i}` }))));
}

// ---------------------------------------------------------------- scores
const charts = {};
function drawChart(id, config) {  // Chart.js, served from /static (no CDN)
  if (typeof Chart === "undefined") return;
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(document.getElementById(id), { ...config, options: { animation: false, responsive: false, ...(config.options || {}) } });
}

async function loadScoreTenants() {
  const sel = document.getElementById("s-tenant");
  const keep = sel.value;
  const tenants = await api("GET", "/scores");
  sel.replaceChildren(...tenants.map((t) => el("option", { value: t.tenant, text: `${t.tenant} (${t.members} members)`,
                                                           selected: t.tenant === keep })));
  state.scoreModels = Object.fromEntries(tenants.map((t) => [t.tenant, t.model]));
  showModel();
  if (tenants.length) await loadReportCard();
}

function showModel() {
  const m = (state.scoreModels || {})[document.getElementById("s-tenant").value];
  if (!m) { document.getElementById("s-model").value = ""; return; }
  const { tenant, generation, ...editable } = m;
  document.getElementById("s-model").value = JSON.stringify(editable, null, 2);
}

async function saveModel() {
  let body;
  try { body = JSON.parse(document.getElementById("s-model").value); }
  catch (e) { say(`the model is not JSON: ${e.message}`, true); return; }
  const tenant = document.getElementById("s-tenant").value;
  const saved = await api("PUT", `/scores/models/${encodeURIComponent(tenant)}`, body);
  state.scoreModels[tenant] = saved;
  say(`scoring model of ${tenant} saved (new activities score under it; a rebuild re-scores the past)`);
}

function scoreQuery() {
  const q = new URLSearchParams({ tenant: document.getElementById("s-tenant").value });
  const period = document.getElementById("s-period").value.trim();
  if (period) q.set("period", period);
  return q;
}

async function loadReportCard() {
  const c = await api("GET", "/scores/report?" + scoreQuery().toString());
  const measure = (name, m) => el("tr", {}, el("td", { text: name }), el("td", { text: String(m.now), "data-testid": `card-${name.replace(/ /g, "-")}` }),
    el("td", { text: String(m.previous) }), el("td", { text: `${m.change >= 0 ? "+" : ""}${m.change}${m.change_pct === null ? "" : ` (${m.change_pct}%)`}` }));
  const d = c.score_distribution;
  document.getElementById("card").replaceChildren(
    el("h3", { text: `${c.tenant}: ${c.period} (${c.from} to ${c.to}), against ${c.previous_period}` }),
    el("table", {}, el("tr", {}, el("th", { text: "Measure" }), el("th", { text: "This period" }), el("th", { text: "Previous" }), el("th", { text: "Change" })),
      measure("active members", c.active_members), measure("activities", c.activities), measure("points", c.points)),
    el("p", { text: `New members ${c.new_members}, returning ${c.returning_members}. Scores of ${d.members} members as of ${d.as_of}: p25 ${d.p25}, median ${d.p50}, p75 ${d.p75}, p90 ${d.p90}, p99 ${d.p99}, max ${d.max}.`, "data-testid": "card-distribution" }),
    el("h4", { text: "Top members" }),
    el("ol", {}, ...c.top_members.map((t) => el("li", {}, el("a", { href: "#", text: `${t.member}: ${t.points} points, ${t.activities} activities`,
      "data-testid": `top-${t.member}`, onclick: (ev) => { ev.preventDefault(); loadMember(t.member).catch((e) => say(e.message, true)); } })))));
  drawChart("chart-categories", { type: "bar", data: { labels: c.by_category.map((x) => x.category),
    datasets: [{ label: "points", data: c.by_category.map((x) => x.points) },
               { label: "activities", data: c.by_category.map((x) => x.activities) }] } });
}

async function loadMember(member, category = "") {
  const q = new URLSearchParams({ tenant: document.getElementById("s-tenant").value });
  if (category) q.set("category", category);
  const m = await api("GET", `/scores/members/${encodeURIComponent(member)}?` + q.toString());
  const cats = [...new Set(Object.values(m.periods).flatMap((b) => Object.keys(b)))].sort();
  const filter = el("select", { "data-testid": "member-category",
    onchange: (ev) => loadMember(member, ev.target.value).catch((e) => say(e.message, true)) },
    el("option", { value: "", text: "All categories" }),
    ...cats.map((c) => el("option", { value: c, text: c, selected: c === category })));
  document.getElementById("member").replaceChildren(
    el("h3", { text: `${m.member}: score ${m.score}, rank ${m.rank} of ${m.members}`, "data-testid": "member-title" }),
    el("p", { text: `${m.activities} activities, ${m.points} points; first ${m.first_seen}, last ${m.last_activity}` }),
    el("label", { text: "Timeline: " }, filter),
    el("table", {}, el("tr", {}, el("th", { text: "When" }), el("th", { text: "Activity" }), el("th", { text: "Category" }), el("th", { text: "Description" })),
      ...m.timeline.map((r) => el("tr", { "data-testid": "timeline-row" }, el("td", { text: r.activity_date }), el("td", { text: r.activity_code }),
        el("td", { text: r.category }), el("td", { text: r.description || "" })))));
  drawChart("chart-member", { type: "line", data: { labels: m.history.map((h) => h.day),
    datasets: [{ label: "score", data: m.history.map((h) => h.score) }] } });
}

async function download(format) {
  const q = scoreQuery();
  q.set("format", format);
  const resp = await fetch(`/api/v1/scores/report?${q.toString()}`, { headers: { "Authorization": `Bearer ${state.key}` } });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => ({})));
  const url = URL.createObjectURL(await resp.blob());
  const a = el("a", { href: url, download: `report-card.${format}` });
  document.body.append(a);
  a.click();
  a.remove();
}

async function loadContacts() {
  const q = new URLSearchParams();
  for (const [id, name] of [["c-name", "name"], ["c-email", "email"], ["c-phone", "phone"], ["c-id", "contact_id"]]) {
    const v = document.getElementById(id).value.trim();
    if (v) q.set(name, v);
  }
  q.set("limit", "200");
  const res = await api("GET", "/contacts?" + q.toString());
  document.getElementById("contact-count").textContent = `${res.count} shown of ${res.total} contacts`;
  document.getElementById("contact-rows").replaceChildren(...res.contacts.map((c) => {
    const d = c.details || {};
    const name = d.IsOrganization ? d.OrganizationName : [d.FirstName, d.LastName].filter(Boolean).join(" ");
    return el("tr", {}, el("td", { text: c.tenant }), el("td", { text: c.ContactId }), el("td", { text: name || "" }),
      el("td", { text: d.PrimaryEmailAddress || "" }),
      el("td", { text: Object.values(c.groups || {}).map((g) => g.GroupName || g.GroupId).join(", ") }),
      el("td", { text: Object.entries(c.lists || {}).map(([k, l]) => l.ListName || k).join(", ") }),
      el("td", { text: c.deleted ? "yes" : "" }));
  }));
}

async function loadKeys() {
  const keys = await api("GET", "/ingest-keys");
  document.getElementById("key-rows").replaceChildren(...keys.map((k) => {
    const revoke = el("button", { text: "Revoke", "data-testid": `key-revoke-${k.id}` });
    revoke.addEventListener("click", async () => {
      try { await api("DELETE", `/ingest-keys/${encodeURIComponent(k.id)}`); say(`revoked ${k.id}`); await loadKeys(); }
      catch (e) { say(e.message, true); }
    });
    return el("tr", {}, el("td", { text: k.id }), el("td", { text: k.tenant }), el("td", { text: k.origin || "" }),
      el("td", { text: when(k.created_at / 1000) }), el("td", {}, revoke));
  }));
}

async function issueKey() {
  const origin = document.getElementById("k-origin").value.trim();
  const body = { id: document.getElementById("k-id").value.trim(), tenant: document.getElementById("k-tenant").value.trim(),
                 origin: origin || null };
  const res = await api("POST", "/ingest-keys", body);
  document.getElementById("key-new").textContent = `New key for ${res.tenant} (shown once): ${res.key}`;
  await loadKeys();
}

// ---------------------------------------------------------------- community lists
async function loadLists() {
  const rows = await api("GET", "/lists");
  const body = document.getElementById("list-rows");
  body.replaceChildren(...rows.map((l) => el("tr", { "data-testid": `list-row-${l.id}` },
    el("td", { text: l.tenant }), el("td", { text: l.name }), el("td", { text: l.target_group || "— (not offered: no Informz prefix)" }),
    el("td", { text: String(l.count), "data-testid": `list-count-${l.id}` }), el("td", { text: l.sample.join(", ") }),
    el("td", {}, el("button", { type: "button", text: "Edit", onclick: () => editList(l) }), " ",
      el("button", { type: "button", text: "Reconcile", "data-testid": `list-reconcile-${l.id}`,
                     onclick: () => reconcile(l).catch((e) => say(e.message, true)) }), " ",
      el("button", { type: "button", text: "Delete", onclick: () => deleteList(l).catch((e) => say(e.message, true)) })))));
  if (!document.getElementById("l-rules").children.length && !document.getElementById("l-criteria").value) addRule();
}

function categories() { return [...new Set(state.activities.map((a) => a.category))].sort(); }

function addRule(kind = "did") {
  const what = el("select", { "data-testid": "rule-what" },
    el("optgroup", { label: "Activity codes" }, ...state.activities.map((a) => el("option", { value: `code:${a.activity_code}`, text: a.activity_code }))),
    el("optgroup", { label: "Categories" }, ...categories().map((c) => el("option", { value: `category:${c}`, text: `any ${c} activity` }))));
  const how = el("select", { "data-testid": "rule-kind" }, el("option", { value: "did", text: "did" }),
    el("option", { value: "never", text: "did not do" }), el("option", { value: "score", text: "has an engagement score of at least" }),
    el("option", { value: "member_of", text: "is a member of the community" }));
  how.value = kind;
  const times = el("input", { type: "number", min: "1", value: "1", "data-testid": "rule-times", "aria-label": "at least this many times" });
  const days = el("input", { type: "number", min: "1", max: "400", placeholder: "any time", "data-testid": "rule-days", "aria-label": "within the last days" });
  const value = el("input", { "data-testid": "rule-value", "aria-label": "score or community", size: "16" });
  const row = el("div", { class: "rule" }, how, what, el("span", { class: "t-times", text: "at least" }), times,
    el("span", { class: "t-times", text: "times," }), el("span", { class: "t-days", text: "within the last" }), days,
    el("span", { class: "t-days", text: "days" }), value,
    el("button", { type: "button", text: "Remove", onclick: () => { row.remove(); rulesChanged(); } }));
  row.rule = () => {
    const k = how.value;
    if (k === "score") return { score: { at_least: Number(value.value || 0) } };
    if (k === "member_of") return { member_of: { community: value.value.trim() } };
    const [field, name] = what.value.split(/:(.*)/s);
    const c = { [field === "code" ? "codes" : "categories"]: [name] };
    if (days.value) c.within_days = Number(days.value);
    if (k === "did" && Number(times.value) > 1) c.at_least = Number(times.value);
    return k === "did" ? { activity: c } : { never: c };
  };
  const shown = () => {
    const k = how.value;
    what.hidden = k === "score" || k === "member_of";
    for (const e of row.querySelectorAll(".t-days")) e.hidden = what.hidden;
    days.hidden = what.hidden;
    for (const e of row.querySelectorAll(".t-times")) e.hidden = k !== "did";
    times.hidden = k !== "did";
    value.hidden = !what.hidden;
  };
  for (const e of [how, what, times, days, value]) e.addEventListener("input", () => { shown(); rulesChanged(); });
  shown();
  document.getElementById("l-rules").append(row);
  rulesChanged();
}

function rulesChanged() {
  const rules = [...document.getElementById("l-rules").children].map((r) => r.rule());
  const op = document.getElementById("l-op").value;
  document.getElementById("l-criteria").value = rules.length === 1 ? JSON.stringify(rules[0], null, 2)
    : rules.length ? JSON.stringify({ [op]: rules }, null, 2) : "";
  previewSoon();
}

function previewSoon() {
  clearTimeout(state.previewTimer);
  state.previewTimer = setTimeout(() => previewList().catch((e) => say(e.message, true)), 250);
}

async function previewList() {
  const out = document.getElementById("l-preview");
  const box = document.getElementById("l-criteria");
  const tenant = document.getElementById("l-tenant").value.trim();
  if (!tenant || !box.value.trim()) { out.textContent = ""; return; }
  let criteria;
  try { criteria = JSON.parse(box.value); } catch (e) { out.textContent = `not JSON yet: ${e.message}`; box.classList.add("invalid"); return; }
  try {
    const p = await api("POST", "/lists/preview", { tenant, criteria });
    box.classList.remove("invalid");
    out.className = "";
    out.textContent = `${p.count} member${p.count === 1 ? "" : "s"} match now (of ${p.members_evaluated} with activity)` +
      (p.sample.length ? `, e.g. ${p.sample.join(", ")}` : "");
  } catch (e) { box.classList.add("invalid"); out.className = "error"; out.textContent = e.message; }
}

function editList(l) {
  document.getElementById("l-tenant").value = l.tenant;
  document.getElementById("l-name").value = l.name;
  document.getElementById("l-push").checked = !!l.push;
  document.getElementById("l-rules").replaceChildren();
  document.getElementById("l-criteria").value = JSON.stringify(l.criteria, null, 2);
  state.editingList = l.id;
  previewSoon();
  document.getElementById("l-name").focus();
}

function slug(name) { return name.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-+|-+$/g, "").toLowerCase().slice(0, 100) || "list"; }

async function saveList() {
  const tenant = document.getElementById("l-tenant").value.trim();
  const name = document.getElementById("l-name").value.trim();
  let criteria;
  try { criteria = JSON.parse(document.getElementById("l-criteria").value); } catch (e) { throw new Error(`criteria: not JSON: ${e.message}`); }
  const id = state.editingList || slug(name);
  await api("PUT", `/lists/${encodeURIComponent(tenant)}/${encodeURIComponent(id)}`,
            { name, criteria, push: document.getElementById("l-push").checked });
  state.editingList = null;
  say(`list ${name} saved: its members follow in a moment`);
  await loadLists();
}

async function deleteList(l) {
  if (!confirm(`Delete list ${l.name}? Its target group stops being offered.`)) return;
  await api("DELETE", `/lists/${encodeURIComponent(l.tenant)}/${encodeURIComponent(l.id)}`);
  say(`list ${l.name} deleted`);
  await loadLists();
}

async function reconcile(l) {
  const r = await api("GET", `/lists/${encodeURIComponent(l.tenant)}/${encodeURIComponent(l.id)}/reconciliation`);
  const row = (k, v) => el("tr", {}, el("td", { text: k }), el("td", { text: v }));
  const list = (xs) => xs.length ? xs.join(", ") : "none";
  document.getElementById("l-reconcile").replaceChildren(el("h3", { text: `${r.list} → ${r.target_group || "(not offered)"}` }),
    el("table", { class: "recon" },
      row("Members in the community", String(r.community_count)),
      row("Subscribers in the target group", r.platform_count === null || r.platform_count === undefined ? "unknown" : String(r.platform_count)),
      row("Malformed or missing e-mail addresses", list(r.malformed_emails.map((m) => `${m.remote_id} (${m.email || "none"})`))),
      row("Duplicate e-mail addresses in the community", list(r.duplicate_emails.map((d) => `${d.email}: ${d.remote_ids.join(", ")}`))),
      row("Unsubscribed in the marketing platform", list(r.unsubscribed || []))),
    el("ul", { "data-testid": "reconcile-reasons" }, ...(r.reasons || []).map((x) => el("li", { text: x }))));
}

async function issueConnection() {
  const tenant = document.getElementById("o-tenant").value.trim();
  const c = await api("POST", `/list-connections/${encodeURIComponent(tenant)}`, {});
  document.getElementById("occ-new").textContent = `IAMKey ${c.iam_key}, password ${c.password} (shown this once)`;
}

// ---------------------------------------------------------------- tabs and start
const loaders = { contacts: async () => { await loadContacts(); await loadKeys(); }, endpoints: loadEndpoints, subscriptions: async () => { await loadEndpoints(); fillFilters(); await loadSubscriptions(); },
                  status: loadStatus, dead: async () => { await loadEndpoints(); await loadDead(); }, audit: loadAudit,
                  sync: loadSync, scores: loadScoreTenants, lists: loadLists };

async function show(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== tab;
  clearInterval(state.timer);
  try { await loaders[tab](); } catch (e) { say(e.message, true); }
  if (tab === "status") state.timer = setInterval(() => loadStatus().catch((e) => say(e.message, true)), 2000);
}

async function signIn() {
  try {
    [state.providers, state.activities, state.categories, state.me] = await Promise.all([api("GET", "/providers"),
      api("GET", "/activities"), api("GET", "/categories"), api("GET", "/whoami")]);
    document.getElementById("who").textContent =
      `signed in as ${state.me.id} (${state.me.role}, tenants ${state.me.tenants.join(", ")})`;
    signedIn(true);
    say("");
    await show(state.tab);
  } catch (e) { document.getElementById("who").textContent = ""; signedIn(false); say(e.message, true); }
}

function signedIn(yes) {
  // signed in: the key is not left in an editable field; Sign out forgets it
  const input = document.getElementById("api-key");
  input.hidden = yes;
  input.closest("label").hidden = yes;
  document.getElementById("sign-in").hidden = yes;
  document.getElementById("sign-out").hidden = !yes;
  if (yes) input.value = "";
}

function signOut() {
  state.key = "";
  sessionStorage.removeItem("activity-sync-key");
  document.getElementById("who").textContent = "";
  signedIn(false);
  for (const t of document.querySelectorAll("main tbody")) t.replaceChildren();
  say("signed out");
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = document.getElementById("api-key").value.trim();
    sessionStorage.setItem("activity-sync-key", state.key);
    signIn();
  });
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("add-activity-code").addEventListener("click", () => activityCodeDialog(null));
  document.getElementById("ep-filter").addEventListener("input", filterEndpoints);
  document.getElementById("d-prev").addEventListener("click", () => { state.deadPage -= 1; showDeadPage(); });
  document.getElementById("d-next").addEventListener("click", () => { state.deadPage += 1; showDeadPage(); });
  document.getElementById("dead-rows").addEventListener("change", showDeadPage);
  document.getElementById("f-clear").addEventListener("click", () => {
    document.getElementById("f-name").value = "";
    for (const id of ["f-endpoint", "f-category"]) for (const o of document.getElementById(id).options) o.selected = false;
    document.getElementById("f-subscribed").value = "all";
    loadSubscriptions().catch((e) => say(e.message, true));
  });
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.tab));
  document.getElementById("create-endpoint").addEventListener("click", () => endpointDialog(null));
  document.getElementById("s-show").addEventListener("click", () => loadReportCard().catch((e) => say(e.message, true)));
  document.getElementById("s-tenant").addEventListener("change", () => { showModel(); loadReportCard().catch((e) => say(e.message, true)); });
  document.getElementById("s-model-save").addEventListener("click", () => saveModel().catch((e) => say(e.message, true)));
  document.getElementById("s-csv").addEventListener("click", () => download("csv").catch((e) => say(e.message, true)));
  document.getElementById("s-html").addEventListener("click", () => download("html").catch((e) => say(e.message, true)));
  document.getElementById("l-add").addEventListener("click", () => addRule());
  document.getElementById("l-op").addEventListener("change", rulesChanged);
  document.getElementById("l-criteria").addEventListener("input", previewSoon);
  document.getElementById("l-tenant").addEventListener("input", previewSoon);
  const onSubmit = (id, fn) => document.getElementById(id).addEventListener("submit", (ev) => {
    ev.preventDefault();
    fn().catch((e) => say(e.message, true));
  });
  onSubmit("list-builder", saveList);
  onSubmit("occ-issue", issueConnection);
  onSubmit("key-issue", issueKey);
  onSubmit("contact-search", loadContacts);
  document.getElementById("f-name").addEventListener("input", () => loadSubscriptions().catch((e) => say(e.message, true)));
  for (const id of ["f-endpoint", "f-category", "f-subscribed"])
    document.getElementById(id).addEventListener("change", () => loadSubscriptions().catch((e) => say(e.message, true)));
  document.getElementById("d-endpoint").addEventListener("change", () => loadDead().catch((e) => say(e.message, true)));
  document.getElementById("d-refresh").addEventListener("click", () => loadDead().catch((e) => say(e.message, true)));
  document.getElementById("d-all").addEventListener("change", (ev) => {
    for (const c of document.querySelectorAll("#dead-rows input:not(:disabled)")) c.checked = ev.target.checked;
    showDeadPage(); });
  document.getElementById("d-dry-run").addEventListener("click", async () => {
    try {
      const body = replayBody();
      if (!body.rows.length) {  // nothing ticked is nothing to replay
        document.getElementById("d-result").textContent = "nothing selected: tick the dead letters to replay";
        document.getElementById("d-replay").disabled = true;
        return;
      }
      const plan = await api("POST", "/replay", { ...body, dry_run: true });
      state.replayPlan = body;
      document.getElementById("d-result").textContent = planText(plan, "dry run");
      document.getElementById("d-replay").disabled = plan.would_replay === 0;
    } catch (e) { say(e.message, true); }
  });
  document.getElementById("d-replay").addEventListener("click", async () => {
    try {
      if (!state.replayPlan || !state.replayPlan.rows.length) return;
      const done = await api("POST", "/replay", { ...state.replayPlan, dry_run: false });
      await loadDead();
      // the listing catches up with the replay a moment later: mark what was sent now
      for (const it of done.items.filter((i) => i.action === "replay")) {
        const row = document.querySelector(`[data-testid="dead-row-${CSS.escape(it.activity_key)}"]`);
        if (row) { row.cells[7].textContent = "yes"; row.querySelector("input").disabled = true; }
      }
      document.getElementById("d-result").textContent = `replayed ${done.replayed}` +
        (done.not_replayed ? `, ${done.not_replayed} not` : "");
    } catch (e) { say(e.message, true); }
  });
  if (state.key) { document.getElementById("api-key").value = state.key; signIn(); }
});
