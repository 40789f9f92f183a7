import ast
from pathlib import Path

import atdata

ROOT = Path(__file__).resolve().parent.parent

# The public API. Changing it is a decision: update this list (and the README) in the same commit.
PUBLIC = {
    # errors
    "AppViewError",
    "AtdataError",
    "AtdataWarning",  # a warning, not an error: unverified shards, unpinned lens code
    "DecodeError",
    "FieldTypeError",
    "InvalidVersion",
    "LensError",
    "LexiconError",
    "LoaderError",
    "MissingExtraError",
    "ResolutionError",
    "SampleValueError",
    "SchemaError",
    "ShardIntegrityError",
    "ShardTaskError",
    "SourceError",
    "UnsafeURLError",
    # samples
    "DictSample",
    "FieldKind",
    "FieldSpec",
    "PackableSample",
    "Shape",
    "is_packable",
    "packable",
    "sample_fields",
    "schema_of",
    "type_from_schema",
    # data path
    "Dataset",
    "Lens",
    "SampleBatch",
    "ShardInfo",
    "lens",
    "mix",
    "write_samples",
    # federation
    "AppViewClient",
    "load_dataset",
    "__version__",
    # cluster engines (modules imported on first use: the ray and dask extras)
    "dask",
    "map_shards",
    "ray",
}


def test_errors_name_their_location() -> None:
    err = atdata.DecodeError("bad msgpack", shard="a.tar", key="s1", field="image")
    assert "a.tar" in str(err) and "s1" in str(err) and "image" in str(err)
    assert isinstance(err, atdata.AtdataError)


def test_public_api_is_pinned() -> None:
    assert len(atdata.__all__) == len(set(atdata.__all__)), "a name is listed twice"
    assert set(atdata.__all__) == PUBLIC
    for name in atdata.__all__:
        assert getattr(atdata, name) is not None, name


def test_errors_of_the_public_api_share_one_base() -> None:
    errors = [getattr(atdata, n) for n in PUBLIC if n.endswith("Error")]
    assert all(issubclass(e, atdata.AtdataError) for e in errors)


def test_package_ships_its_types() -> None:
    # PEP 561: without the marker, users' type checkers ignore atdata's annotations.
    assert (Path(atdata.__file__).parent / "py.typed").is_file()


def test_no_library_module_imports_webdataset() -> None:
    # webdataset is a test/benchmark dependency (the `dev` extra), not a runtime one; imports
    # inside functions count too.
    for path in [*(ROOT / "sdk").rglob("*.py"), *(ROOT / "appview").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "webdataset" for n in names), path


def test_type_ignores_stay_rare() -> None:
    # mypy checks sdk/ and appview/ (make lint); fix a type instead of silencing it.
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in [*(ROOT / "sdk").rglob("*.py"), *(ROOT / "appview").rglob("*.py")]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "type: ignore" in line
    ]
    assert len(found) <= 5, found
