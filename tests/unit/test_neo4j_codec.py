"""The neo4j driver packs and unpacks Bolt messages with its Rust codec (`neo4j-rust-ext`, a
dependency of `common`): graphinator's batches and the api's reads would take several times the
CPU in the pure-Python one, and the driver falls back to it silently when the extension is
missing."""

from neo4j._codec.packstream import v1


def test_the_driver_uses_the_rust_packstream_codec() -> None:
    codec = vars(v1)  # private names, not re-exported for the type checker
    assert codec["_rust_pack"] is not None
    assert codec["_rust_unpack"] is not None
