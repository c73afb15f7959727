"""Extract one served version's openAPIV3Schema from a CustomResourceDefinition YAML, for offline validation.

Writes <out-dir>/<group>_<plural>.json (compact, sorted keys):
    {"provenance": {...}, "apiVersion": "<group>/<version>", "kind": "<Kind>", "schema": <openAPIV3Schema>}

No network: the CRD is read from a file (or "-" for stdin), e.g. straight out of a repository snapshot:
    git --git-dir=REPO.git show TAG:path/to/crd.yaml | python tests/crds/extract.py - \
        --repository https://github.com/OWNER/NAME --commit SHA --path path/to/crd.yaml --version TAG
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_OUT_DIR = Path(__file__).resolve().parent


def load_crd(text: str) -> dict[str, Any]:
    """The one CustomResourceDefinition document in ``text``."""
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    if len(crds) != 1:
        raise ValueError(f"expected exactly one CustomResourceDefinition, found {len(crds)}")
    return crds[0]


def pick_version(crd: dict[str, Any], wanted: str | None) -> dict[str, Any]:
    """The served version named ``wanted``, or else the storage version."""
    versions: list[dict[str, Any]] = [v for v in crd["spec"]["versions"] if v.get("served", False)]
    for v in versions:
        if (wanted is None and v.get("storage", False)) or v["name"] == wanted:
            return v
    names = [v["name"] for v in versions]
    raise ValueError(f"served version {wanted or '(storage)'} not in {names}")


def check_json_native(node: Any, where: str = "$") -> None:
    """Fail on anything YAML 1.1 turned into a non-JSON value (dates, non-string keys)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise TypeError(f"non-string key {key!r} at {where}")
            check_json_native(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_json_native(value, f"{where}[{i}]")
    elif node is not None and not isinstance(node, str | int | float | bool):
        raise TypeError(f"non-JSON value {node!r} ({type(node).__name__}) at {where}")


def extract(crd: dict[str, Any], provenance: dict[str, str], version: str | None) -> tuple[str, dict[str, Any]]:
    """The output file name and document for ``crd``."""
    spec = crd["spec"]
    served = pick_version(crd, version)
    schema = served["schema"]["openAPIV3Schema"]
    check_json_native(schema)
    doc = {
        "provenance": provenance,
        "apiVersion": f"{spec['group']}/{served['name']}",
        "kind": spec["names"]["kind"],
        "schema": schema,
    }
    return f"{spec['group']}_{spec['names']['plural']}.json", doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("crd", help="CRD YAML file, or - for stdin")
    parser.add_argument("--repository", required=True, help="https://github.com/OWNER/NAME")
    parser.add_argument("--commit", required=True, help="40-hex commit the file was read at")
    parser.add_argument("--path", required=True, help="the file's path in the repository")
    parser.add_argument("--version", required=True, help="release tag or version label")
    parser.add_argument("--license", default="Apache-2.0")
    parser.add_argument("--served-version", help="CRD version to extract (default: the storage version)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args(argv)

    text = sys.stdin.read() if args.crd == "-" else Path(args.crd).read_text(encoding="utf-8")
    provenance = {
        "repository": args.repository,
        "commit": args.commit,
        "path": args.path,
        "version": args.version,
        "license": args.license,
    }
    name, doc = extract(load_crd(text), provenance, args.served_version)
    out = args.out_dir / name
    out.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=True), encoding="utf-8")
    print(f"{out} {out.stat().st_size} bytes ({doc['apiVersion']} {doc['kind']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
