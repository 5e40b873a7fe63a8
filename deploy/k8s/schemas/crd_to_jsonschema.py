"""Turn CustomResourceDefinitions into JSON Schemas for offline validation.

    python3 crd_to_jsonschema.py --out DIR --origin TEXT --kinds Kafka,KafkaTopic CRD.yaml...

For every served version of every CRD whose kind is listed, writes
``DIR/<group>_<version>_<kind>.json`` (lower case) and records in ``DIR/sources.json``
where it came from (``--origin``: project, version, coordinates or URL, how the CRD was
obtained) with the SHA-256 of the CRD it was converted from.

The conversion follows how the API server reads a structural ``openAPIV3Schema``:

* an object with ``properties`` refuses other fields (``additionalProperties: false``),
  unless it carries ``x-kubernetes-preserve-unknown-fields: true`` or says otherwise;
* ``nullable: true`` admits ``null``; ``x-kubernetes-int-or-string`` admits both;
* ``apiVersion`` and ``kind`` are pinned to the CRD's group/version and kind;
* descriptions and the other ``x-kubernetes-*`` markers (CEL rules, list types) are
  dropped: they document or need an API server, and the files stay small;
* a ``pattern`` is a Go (RE2) regular expression: an inline flag group such as ``(?i)``
  after ``^`` is moved to the front, where Python's ``re`` (and so ``jsonschema``)
  accepts it with the same meaning.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

DRAFT = "https://json-schema.org/draft/2020-12/schema"
DROPPED = {"description", "nullable", "example", "externalDocs"}
NESTED_SCHEMAS = ("items", "not", "additionalProperties")  # when they hold a schema
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


GLOBAL_FLAGS = re.compile(r"^\^\(\?([imsU]+)\)")


def python_pattern(pattern: str) -> str:
    """A Go regular expression with its leading inline flags where Python wants them."""
    return GLOBAL_FLAGS.sub(lambda m: f"(?{m.group(1)})^", pattern)


def convert(node: dict[str, Any], branch: bool = False) -> dict[str, Any]:
    """One openAPIV3Schema node as JSON Schema (see the module docstring). A ``branch``
    (an item of ``oneOf``, ``anyOf`` or ``allOf``) is a value validation only, as in a
    structural schema: it never closes the object, whose own ``properties`` do (Strimzi's
    ``oneOf: [{required: [certificate]}, {required: [pattern]}]`` beside ``secretName``)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: convert(child) for name, child in value.items()}
        elif key in NESTED_SCHEMAS and isinstance(value, dict):
            out[key] = convert(value)
        elif key in SCHEMA_LISTS:
            out[key] = [convert(child, branch=True) for child in value]
        elif key == "pattern" and isinstance(value, str):
            out[key] = python_pattern(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if "properties" in out and "additionalProperties" not in out and not preserve and not branch:
        out["additionalProperties"] = False
    return out


def resource_schema(crd: dict[str, Any], version: dict[str, Any], title: str) -> dict[str, Any]:
    spec = crd["spec"]
    schema = convert(version["schema"]["openAPIV3Schema"])
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"const": f"{spec['group']}/{version['name']}"}
    properties["kind"] = {"const": spec["names"]["kind"]}
    required = set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"}
    schema["required"] = sorted(required)
    return {"$schema": DRAFT, "title": title, **schema}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--origin", required=True, help="where the CRDs come from")
    parser.add_argument("--kinds", required=True, help="comma-separated kinds to keep")
    parser.add_argument("crds", nargs="+", type=Path)
    args = parser.parse_args(argv)
    kinds = set(args.kinds.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    sources_path = args.out / "sources.json"
    sources = json.loads(sources_path.read_text("utf-8")) if sources_path.exists() else {}
    written = set()
    for path in args.crds:
        raw = path.read_bytes()
        for crd in yaml.safe_load_all(raw):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            kind = spec["names"]["kind"]
            if kind not in kinds:
                continue
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                name = f"{spec['group']}_{version['name']}_{kind}".lower() + ".json"
                title = f"{spec['group']}/{version['name']} {kind} ({args.origin.split(':')[0]})"
                schema = resource_schema(crd, version, title)
                text = json.dumps(schema, indent=1, sort_keys=True) + "\n"
                (args.out / name).write_text(text, "utf-8")
                sources[name] = {
                    "apiVersion": f"{spec['group']}/{version['name']}",
                    "kind": kind,
                    "origin": args.origin,
                    "crd": path.name,
                    "crd_sha256": hashlib.sha256(raw).hexdigest(),
                }
                written.add(kind)
    missing = kinds - written
    if missing:
        parser.error(f"no CRD for {sorted(missing)} in {[str(p) for p in args.crds]}")
    sources_path.write_text(json.dumps(sources, indent=1, sort_keys=True) + "\n", "utf-8")
    for name in sorted(sources):
        print(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
