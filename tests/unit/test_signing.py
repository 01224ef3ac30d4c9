"""Model signatures with real Ed25519 keys: what is signed, what verifies, what is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sproxxo.errors import ModelUnavailable
from sproxxo.ml.signing import (
    LocalKeySigner,
    check_signature,
    dev_verify_key,
    manifest_bytes,
    public_pem,
    sign_manifest,
    signer_for,
    verify_or_raise,
)

MANIFEST: dict[str, Any] = {
    "checksums": {"pipeline.pkl": "ab" * 32, "reference.parquet": "cd" * 32},
    "metrics": {"roc_auc": 0.99},
    "trained_at": "2026-12-01T00:00:00+00:00",
}


def _signed(tmp_path: Path) -> tuple[dict[str, Any], str]:
    signer = LocalKeySigner(tmp_path / "keys")
    signature = sign_manifest(MANIFEST, signer)
    return {**MANIFEST, "signature": signature.as_metadata()}, signer.public_key_pem()


def test_signed_manifest_verifies_with_the_matching_key(tmp_path: Path) -> None:
    """A manifest signed by the promotion key verifies with its public half."""
    signed, public = _signed(tmp_path)
    assert check_signature(signed, public, required=True) is None
    assert signed["signature"]["algorithm"] == "ed25519"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("checksums", "pipeline.pkl"), "00" * 32),  # a rewritten pickle's new checksum
        (("metrics", "roc_auc"), 0.999),
        (("trained_at",), "2026-12-02T00:00:00+00:00"),
    ],
)
def test_any_change_to_the_manifest_breaks_the_signature(
    tmp_path: Path, path: tuple[str, ...], value: Any
) -> None:
    """Rewriting a checksum (to match a swapped pickle) or any other field is detected."""
    signed, public = _signed(tmp_path)
    target = signed
    for key in path[:-1]:
        target[key] = dict(target[key])
        target = target[key]
    target[path[-1]] = value
    problem = check_signature(signed, public, required=False)
    assert problem is not None
    assert "does not verify" in problem


def test_notes_added_after_promotion_are_not_signed(tmp_path: Path) -> None:
    """A forced promotion's reason, added to the metadata later, keeps the signature valid."""
    signed, public = _signed(tmp_path)
    signed["notes"] = {"promotion_reason": "hotfix INC-42"}
    assert check_signature(signed, public, required=True) is None


def test_another_key_does_not_verify(tmp_path: Path) -> None:
    """A signature made with a different key (an attacker's) is refused."""
    signed, _ = _signed(tmp_path)
    attacker = public_pem(Ed25519PrivateKey.generate())
    assert check_signature(signed, attacker, required=False) is not None


def test_unsigned_models_are_refused_only_when_required(tmp_path: Path) -> None:
    """Outside dev an unsigned manifest is refused; in dev it loads."""
    _, public = _signed(tmp_path)
    assert check_signature(MANIFEST, public, required=False) is None
    with pytest.raises(ModelUnavailable, match="not signed"):
        verify_or_raise(MANIFEST, public, required=True, tag="sproxxo-fraud:x")


def test_without_a_key_only_dev_accepts(tmp_path: Path) -> None:
    """No verify key: dev cannot check and accepts; a strict environment refuses."""
    signed, _ = _signed(tmp_path)
    assert check_signature(signed, "", required=False) is None
    assert "no verify key" in str(check_signature(signed, "", required=True))


def test_manifest_bytes_are_canonical() -> None:
    """Key order does not change the signed bytes; the signature field is excluded."""
    shuffled = dict(reversed(list(MANIFEST.items())))
    assert manifest_bytes(shuffled) == manifest_bytes(MANIFEST)
    assert manifest_bytes({**MANIFEST, "signature": {"value": "x"}}) == manifest_bytes(MANIFEST)


def test_local_key_pair_is_created_once_and_private(tmp_path: Path) -> None:
    """The dev key pair is made on first use (private key 0600) and reused afterwards."""
    folder = tmp_path / "keys"
    first = signer_for("", dev_folder=folder).sign(b"x")
    assert (folder / "model-signing.pem").stat().st_mode & 0o777 == 0o600
    public = dev_verify_key(folder)
    assert public.startswith("-----BEGIN PUBLIC KEY-----")
    assert LocalKeySigner(folder).public_key_pem() == public
    assert len(first) == 64


def test_kms_spec_selects_the_kms_signer(tmp_path: Path) -> None:
    """`kms://...` names a Cloud KMS key version (signing happens in KMS)."""
    version = "projects/p/locations/europe/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
    signer = signer_for(f"kms://{version}", dev_folder=tmp_path)
    assert signer.key_id == f"kms:{version}"
