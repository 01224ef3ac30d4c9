"""Model authenticity: promoted bundles are signed, and serving verifies before unpickling.

The SHA-256 checksums in a bundle's manifest only prove that the files match the manifest;
whoever can rewrite the pickle can rewrite the manifest too. Promotion therefore signs the
manifest (its canonical JSON, which holds the checksums) with an Ed25519 key that only the
promotion step can use: Cloud KMS in production (the key never leaves KMS), a local key
pair under `<state>/keys/` in dev. Serving holds only the public key (from settings, never
from the bundle), checks the signature over the manifest it is about to trust, then the
checksums, and only then unpickles. Outside dev an unsigned model is refused.
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sproxxo.errors import ModelRefused

#: Manifest fields that are not signed: the signature itself, and notes added after
#: promotion (e.g. a forced promotion's reason), which change nothing that is served.
UNSIGNED_FIELDS: Final = frozenset({"signature", "notes"})
DEV_KEY_FILE: Final = "model-signing.pem"
DEV_PUBLIC_KEY_FILE: Final = "model-signing.pub"


@dataclass(frozen=True)
class Signature:
    """An Ed25519 signature over a manifest, and which key made it."""

    value: str  # base64
    key_id: str

    def as_metadata(self) -> dict[str, str]:
        """The form stored in the model's metadata."""
        return {"value": self.value, "key_id": self.key_id, "algorithm": "ed25519"}


class Signer(Protocol):
    """Something that signs bytes with the promotion key."""

    key_id: str

    def sign(self, payload: bytes) -> bytes:
        """The raw Ed25519 signature of `payload`."""


def manifest_bytes(metadata: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature covers: the manifest without its unsigned fields,
    keys sorted, no whitespace."""
    signed = {k: v for k, v in metadata.items() if k not in UNSIGNED_FIELDS}
    return orjson.dumps(signed, option=orjson.OPT_SORT_KEYS)


def sign_manifest(metadata: Mapping[str, Any], signer: Signer) -> Signature:
    """Sign a manifest with the promotion key."""
    raw = signer.sign(manifest_bytes(metadata))
    return Signature(value=base64.b64encode(raw).decode(), key_id=signer.key_id)


def check_signature(
    metadata: Mapping[str, Any], public_key_pem: str, *, required: bool
) -> str | None:
    """Why this manifest must not be trusted, or None. An unsigned manifest (or no key to
    check with) is refused only when `required`; a signature that does not verify against
    the key is always refused."""
    signature = metadata.get("signature")
    if not signature:
        return "the model is not signed (promote it to sign it)" if required else None
    if not public_key_pem:  # dev without a key pair: nothing to check against
        return "no verify key is configured (SPROXXO_MODEL_VERIFY_KEY)" if required else None
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            return "the verify key is not an Ed25519 public key"
        key.verify(base64.b64decode(signature["value"]), manifest_bytes(metadata))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return f"signature by {signature.get('key_id', '?')!r} does not verify (tampered?)"
    return None


def verify_or_raise(
    metadata: Mapping[str, Any], public_key_pem: str, *, required: bool, tag: str
) -> None:
    """`check_signature`, raising `ModelRefused` with the reason."""
    problem = check_signature(metadata, public_key_pem, required=required)
    if problem:
        raise ModelRefused(f"model {tag} refused: {problem}")


class LocalKeySigner:
    """Dev signer: an Ed25519 key pair in a folder (created on first use, mode 0600)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key_id = f"local:{folder / DEV_KEY_FILE}"

    def _private(self) -> Ed25519PrivateKey:
        path = self.folder / DEV_KEY_FILE
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path.touch(mode=0o600)
            path.write_bytes(pem)
            (self.folder / DEV_PUBLIC_KEY_FILE).write_text(public_pem(key))
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ModelRefused(f"{path} is not an Ed25519 private key")
        return loaded

    def sign(self, payload: bytes) -> bytes:
        """Sign with the local key."""
        return self._private().sign(payload)

    def public_key_pem(self) -> str:
        """The verify key matching this signer."""
        self._private()
        return (self.folder / DEV_PUBLIC_KEY_FILE).read_text()


class KmsSigner:
    """Production signer: a Cloud KMS `EC_SIGN_ED25519` key version, through `gcloud kms
    asymmetric-sign` (the promotion job's identity must hold roles/cloudkms.signer on that
    key and nothing else may)."""

    def __init__(self, key_version: str) -> None:
        # projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V
        self.key_version = key_version
        self.key_id = f"kms:{key_version}"

    def sign(self, payload: bytes) -> bytes:
        """Sign in KMS; the private key never leaves it."""
        parts = self.key_version.split("/")
        names = dict(zip(parts[0::2], parts[1::2], strict=False))
        with tempfile.TemporaryDirectory() as tmp:
            data, signature = Path(tmp) / "manifest", Path(tmp) / "signature"
            data.write_bytes(payload)
            subprocess.run(  # noqa: S603 - fixed argv, no shell
                [  # noqa: S607 - gcloud from PATH (setup-gcloud on the runner)
                    "gcloud",
                    "kms",
                    "asymmetric-sign",
                    "--project",
                    names["projects"],
                    "--location",
                    names["locations"],
                    "--keyring",
                    names["keyRings"],
                    "--key",
                    names["cryptoKeys"],
                    "--version",
                    names["cryptoKeyVersions"],
                    "--input-file",
                    str(data),
                    "--signature-file",
                    str(signature),
                ],
                check=True,
                timeout=60,
            )
            return signature.read_bytes()


def signer_for(spec: str, *, dev_folder: Path) -> Signer:
    """`kms://<key version name>` or a folder holding a local key pair (empty: dev)."""
    if spec.startswith("kms://"):
        return KmsSigner(spec.removeprefix("kms://"))
    return LocalKeySigner(Path(spec) if spec else dev_folder)


def public_pem(key: Ed25519PrivateKey) -> str:
    """The PEM public key of a private key."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def dev_verify_key(folder: Path) -> str:
    """The dev public key, if a dev key pair exists."""
    path = folder / DEV_PUBLIC_KEY_FILE
    return path.read_text() if path.is_file() else ""
