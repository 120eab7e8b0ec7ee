"""The OpenAPI 3.1 document of every registered endpoint, and a page that reads it.

The document is generated from :data:`tether.api.spec.ENDPOINTS` (every route declared
with ``endpoint(...)``, whichever module registered it) and the JSON schemas msgspec
derives from the body and response structs, so it cannot drift from the code. It is
built on first request and rebuilt only when more endpoints have been registered since.

``/api/v1/docs`` is a self-contained HTML page (no CDN, nothing fetched but the document)
listing tags, endpoints, parameters, bodies, responses and schemas.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

import tether
from tether.api.spec import ENDPOINTS, Endpoint, Param, endpoint
from tether.api.views import ErrorView
from tether.core.limits import ID_MAX, ID_MIN

routes = web.RouteTableDef()
TAG = "docs"

DOC_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
REF_TEMPLATE = "#/components/schemas/{name}"
ERROR_REF = {"$ref": REF_TEMPLATE.format(name="ErrorView")}
#: Errors every native API endpoint may answer, besides the ones it declares.
COMMON_ERRORS = {
    400: "Bad request: malformed JSON, a wrong field, or an invalid parameter.",
    401: "Missing, invalid or expired credentials.",
    403: "Not allowed for this principal.",
    404: "Not found.",
}
#: Endpoints that answer something other than JSON.
MEDIA_TYPES = {"/metrics": "text/plain", DOCS_PATH: "text/html"}
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A user's access token (JWT) or API key.",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A user's API key.",
    },
    "deviceCredential": {
        "type": "http",
        "scheme": "bearer",
        "description": "The device's own credential.",
    },
}
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "user": [{"bearerAuth": []}, {"apiKeyHeader": []}],
    "device": [{"deviceCredential": []}],
    "none": [],
}
_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content"}
_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _unique(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item is not None and item not in out:
            out.append(item)
    return out


def _parameter(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.type}
    if param.type == "array":
        schema["items"] = {"type": "string"}
    if param.type == "integer":
        schema["minimum"] = ID_MIN if param.minimum is None else param.minimum
        schema["maximum"] = ID_MAX if param.maximum is None else param.maximum
    out: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "schema": schema,
        "required": param.required or param.where == "path",
    }
    if param.description:
        out["description"] = param.description
    return out


def _parameters(ep: Endpoint, path_names: list[str]) -> list[dict[str, Any]]:
    declared = {(p.where, p.name): p for p in ep.params}
    params = [
        _parameter(declared.get(("path", name), Param(name, "path", required=True)))
        for name in path_names
    ]
    params += [_parameter(p) for p in ep.params if p.where != "path"]
    return params


def _content(path: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    if path in MEDIA_TYPES:
        return {MEDIA_TYPES[path]: {"schema": {"type": "string"}}}
    if schema is None:
        return {}
    return {"application/json": {"schema": schema}}


def _operation_id(ep: Endpoint, taken: set[str]) -> str:
    base = f"{ep.method.lower()}_" + re.sub(r"[^A-Za-z0-9]+", "_", ep.path).strip("_")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def build_document(endpoints: Sequence[Endpoint] = ENDPOINTS) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints``."""
    types = _unique([ErrorView] + [t for ep in endpoints for t in (ep.body, ep.response)])
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)

    def schema(kind: Any) -> dict[str, Any] | None:
        return None if kind is None else schemas[types.index(kind)]

    paths: dict[str, dict[str, Any]] = {}
    tags: list[str] = []
    operation_ids: set[str] = set()
    for ep in endpoints:
        path = _PATH_PARAM.sub(r"{\1}", ep.path)
        item = paths.setdefault(path, {})
        method = ep.method.lower()
        if method in item:
            continue  # the same route registered twice: describe it once
        if ep.tag not in tags:
            tags.append(ep.tag)
        responses: dict[str, Any] = {}
        main: dict[str, Any] = {"description": _STATUS_TEXT.get(ep.status, "Success")}
        content = _content(ep.path, None if ep.status == 204 else schema(ep.response))
        if content:
            main["content"] = content
        responses[str(ep.status)] = main
        errors = dict(COMMON_ERRORS) if ep.path.startswith("/api/") else {}
        errors.update(ep.extra_statuses)
        for code, description in sorted(errors.items()):
            if str(code) in responses:
                continue
            if code >= 400:
                body: dict[str, Any] | None = ERROR_REF
            else:
                body = schema(ep.response)
            entry: dict[str, Any] = {"description": description}
            if body is not None:
                entry["content"] = {"application/json": {"schema": body}}
            responses[str(code)] = entry
        operation: dict[str, Any] = {
            "operationId": _operation_id(ep, operation_ids),
            "summary": ep.summary,
            "tags": [ep.tag],
            "security": SECURITY.get(ep.auth, SECURITY["user"]),
            "responses": responses,
        }
        parameters = _parameters(ep, _PATH_PARAM.findall(ep.path))
        if parameters:
            operation["parameters"] = parameters
        if ep.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema(ep.body)}},
            }
        item[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tether",
            "version": tether.__version__,
            "description": "The native API of Tether: management REST, commands and "
            "notifications. JSON field names are camelCase; errors are "
            '{"error": {"code", "message"}}.',
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


class _Cache:
    """The encoded document, and how many endpoints it was built from."""

    count = -1
    body = b""


def document_bytes() -> bytes:
    if _Cache.count != len(ENDPOINTS):
        endpoints = list(ENDPOINTS)
        _Cache.body = msgspec.json.encode(build_document(endpoints))
        _Cache.count = len(endpoints)
    return _Cache.body


@endpoint(
    routes,
    "GET",
    DOC_PATH,
    summary="This OpenAPI 3.1 document.",
    tag=TAG,
    auth="none",
    response=dict[str, Any],
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


@endpoint(
    routes,
    "GET",
    DOCS_PATH,
    summary="A readable page of the OpenAPI document.",
    tag=TAG,
    auth="none",
)
async def docs(request: web.Request) -> web.Response:
    return web.Response(
        text=DOCS_HTML,
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; connect-src 'self'; "
            "script-src 'unsafe-inline'; style-src 'unsafe-inline'"
        },
    )


DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tether API</title>
<style>
 body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
 header { background: #1d2330; color: #fff; padding: 14px 24px; display: flex; gap: 16px;
          align-items: center; }
 header h1 { font-size: 18px; margin: 0; } header a { color: #9cc4ff; }
 input { padding: 6px 10px; border: 1px solid #ccd; border-radius: 4px; min-width: 260px; }
 main { padding: 16px 24px; max-width: 1100px; }
 h2 { font-size: 16px; margin: 24px 0 8px; text-transform: capitalize; }
 details { background: #fff; border: 1px solid #dde; border-radius: 6px; margin: 6px 0; }
 summary { cursor: pointer; padding: 8px 12px; display: flex; gap: 10px; align-items: center; }
 .m { font: bold 12px monospace; padding: 2px 6px; border-radius: 3px; color: #fff;
      min-width: 52px; text-align: center; }
 .GET { background: #2f7dd1; } .POST { background: #2e9b5f; } .PUT { background: #b7791f; }
 .PATCH { background: #8a5cc7; } .DELETE { background: #c94040; }
 .p { font-family: monospace; } .s { color: #556; } .lock { color: #a60; font-size: 12px; }
 .body { padding: 4px 14px 12px; } table { border-collapse: collapse; margin: 4px 0 10px; }
 td, th { border: 1px solid #e2e4ea; padding: 3px 8px; text-align: left; vertical-align: top; }
 th { background: #f0f2f6; } code { font-family: monospace; color: #7a2a8a; }
 .err { color: #c94040; }
</style>
</head>
<body>
<header><h1 id="title">Tether API</h1><input id="q" placeholder="filter: path, summary, tag">
<a href="/api/v1/openapi.json">openapi.json</a></header>
<main id="out">Loading the document...</main>
<script>
"use strict";
const out = document.getElementById("out");
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const kid of kids) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}
function typeOf(s) {
  if (!s) return "any";
  if (s.$ref) { const n = s.$ref.split("/").pop(); return el("a", {href: "#schema-" + n}, n); }
  if (s.anyOf) return joined(s.anyOf.map(typeOf), " | ");
  if (s.oneOf) return joined(s.oneOf.map(typeOf), " | ");
  if (s.type === "array") { const t = el("span"); t.append(typeOf(s.items), "[]"); return t; }
  if (s.enum) return s.enum.map(v => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  return (s.type || "any") + (s.format ? " (" + s.format + ")" : "");
}
function joined(parts, sep) {
  const t = el("span");
  parts.forEach((p, i) => { if (i) t.append(sep); t.append(p); });
  return t;
}
function table(head, rows) {
  const t = el("table", {}, el("tr", {}, ...head.map(h => el("th", {}, h))));
  for (const r of rows) t.append(el("tr", {}, ...r.map(c => el("td", {}, c))));
  return t;
}
function operation(path, method, op) {
  const d = el("details", {"data-text": (path + " " + (op.summary || "") + " " +
                                         (op.tags || []).join(" ")).toLowerCase()});
  const lock = op.security && op.security.length ? el("span", {class: "lock"}, "auth") : "";
  d.append(el("summary", {}, el("span", {class: "m " + method.toUpperCase()},
                                method.toUpperCase()),
              el("span", {class: "p"}, path), el("span", {class: "s"}, op.summary || ""), lock));
  const b = el("div", {class: "body"});
  if (op.parameters && op.parameters.length) {
    const head = ["name", "in", "type", "required", "description"];
    b.append(el("strong", {}, "Parameters"), table(head,
      op.parameters.map(p => [el("code", {}, p.name), p.in, typeOf(p.schema),
                              p.required ? "yes" : "", p.description || ""])));
  }
  if (op.requestBody) {
    const c = op.requestBody.content || {};
    const media = Object.keys(c)[0];
    b.append(el("div", {}, el("strong", {}, "Body: "), media ? typeOf(c[media].schema) : ""));
  }
  const rows = Object.entries(op.responses || {}).map(([code, r]) => {
    const c = r.content || {};
    const media = Object.keys(c)[0];
    return [code, r.description || "", media ? typeOf(c[media].schema) : "",
            media || ""];
  });
  b.append(el("strong", {}, "Responses"), table(["status", "description", "body", "type"], rows));
  d.append(b);
  return d;
}
function schemaSection(name, s) {
  const d = el("details", {id: "schema-" + name, "data-text": name.toLowerCase()});
  d.append(el("summary", {}, el("span", {class: "p"}, name)));
  const b = el("div", {class: "body"});
  const required = new Set(s.required || []);
  if (s.properties) {
    b.append(table(["field", "type", "required", "default"],
      Object.entries(s.properties).map(([k, v]) => [el("code", {}, k), typeOf(v),
        required.has(k) ? "yes" : "", "default" in v ? JSON.stringify(v.default) : ""])));
  } else {
    b.append(typeOf(s));
  }
  d.append(b);
  return d;
}
function render(doc) {
  document.getElementById("title").textContent =
    (doc.info.title || "API") + " " + (doc.info.version || "") + " (OpenAPI " + doc.openapi + ")";
  out.textContent = "";
  if (doc.info.description) out.append(el("p", {}, doc.info.description));
  const byTag = new Map((doc.tags || []).map(t => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(path, method, op));
    }
  }
  for (const [tag, ops] of byTag) {
    if (!ops.length) continue;
    const sec = el("section", {class: "tag"}, el("h2", {}, tag));
    ops.forEach(o => sec.append(o));
    out.append(sec);
  }
  const schemas = (doc.components || {}).schemas || {};
  const sec = el("section", {class: "tag"}, el("h2", {}, "schemas"));
  for (const name of Object.keys(schemas).sort()) sec.append(schemaSection(name, schemas[name]));
  out.append(sec);
}
document.getElementById("q").addEventListener("input", e => {
  const q = e.target.value.toLowerCase();
  for (const d of document.querySelectorAll("details[data-text]")) {
    d.style.display = d.dataset.text.includes(q) ? "" : "none";
  }
});
fetch("/api/v1/openapi.json").then(r => {
  if (!r.ok) throw new Error("HTTP " + r.status);
  return r.json();
}).then(render).catch(err => {
  out.textContent = "";
  out.append(el("p", {class: "err"}, "Could not load the document: " + err.message));
});
</script>
</body>
</html>
"""
