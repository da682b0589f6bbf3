"""RSA / AES-GCM primitives for WeChat Pay API v3, shared by the client and the sandbox.

Kept apart from ``pay.py`` so that the sandbox (which plays WeChat's side) uses exactly the same
message layouts as our client; the independent check that we got those layouts right is the
``wechatpayv3`` package in the tests, not this module.

Message layouts (STACK-NOTES §5):
  request:   "METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n"   signed with the merchant key
  response:  "TIMESTAMP\\nNONCE\\nBODY\\n"                         signed with the platform key
  paySign:   "APPID\\nTIMESTAMP\\nNONCE\\nprepay_id=...\\n"         signed with the merchant key
"""

from __future__ import annotations

import base64
import re
import secrets
import string
from functools import lru_cache

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
_NONCE_ALPHABET = string.ascii_letters + string.digits

__all__ = [
    "AUTH_SCHEMA", "SIGNTEST_PREFIX", "InvalidSignature", "InvalidTag",
    "nonce", "generate_private_key_pem", "public_key_pem_of", "load_private_key", "load_public_key",
    "rsa_sign", "rsa_verify", "request_message", "response_message", "authorization_header",
    "parse_authorization", "aes_gcm_encrypt", "aes_gcm_decrypt", "rsa_oaep_encrypt", "rsa_oaep_decrypt",
    "self_signed_certificate_pem", "certificate_serial", "certificate_validity", "normalize_serial",
]


def nonce(length: int = 32) -> str:
    """Random ASCII nonce (WeChat uses 32 chars for headers, 12 for AES-GCM)."""
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def generate_private_key_pem(bits: int = 2048) -> str:
    """A fresh RSA key in PKCS#8 PEM (used for the sandbox's throwaway merchant/platform keys)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem_of(private_key_pem: str) -> str:
    key = load_private_key(private_key_pem)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@lru_cache(maxsize=16)
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("WeChat Pay needs an RSA private key")
    return key


@lru_cache(maxsize=16)
def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Accepts a SubjectPublicKeyInfo PEM ("微信支付公钥") or an X.509 certificate PEM."""
    if "BEGIN CERTIFICATE" in pem:
        from cryptography import x509

        key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    else:
        key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("WeChat Pay needs an RSA public key")
    return key


def rsa_sign(private_key_pem: str, message: str | bytes) -> str:
    data = message.encode() if isinstance(message, str) else message
    sig = load_private_key(private_key_pem).sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


def rsa_verify(public_key_pem: str, message: str | bytes, signature_b64: str) -> bool:
    """True when the signature is valid; never raises for malformed input."""
    data = message.encode() if isinstance(message, str) else message
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        load_public_key(public_key_pem).verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def request_message(method: str, path_with_query: str, timestamp: str, nonce_str: str, body: bytes | str) -> bytes:
    body_b = body.encode() if isinstance(body, str) else body
    return f"{method.upper()}\n{path_with_query}\n{timestamp}\n{nonce_str}\n".encode() + body_b + b"\n"


def response_message(timestamp: str, nonce_str: str, body: bytes | str) -> bytes:
    body_b = body.encode() if isinstance(body, str) else body
    return f"{timestamp}\n{nonce_str}\n".encode() + body_b + b"\n"


def authorization_header(mchid: str, serial_no: str, nonce_str: str, timestamp: str, signature: str) -> str:
    return (
        f'{AUTH_SCHEMA} mchid="{mchid}",nonce_str="{nonce_str}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_authorization(header: str) -> dict[str, str] | None:
    """Split a merchant Authorization header into its fields; None when it is not our schema."""
    if not header or not header.startswith(AUTH_SCHEMA + " "):
        return None
    fields = dict(_AUTH_PARAM.findall(header[len(AUTH_SCHEMA) + 1:]))
    needed = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"}
    return fields if needed <= fields.keys() else None


def aes_gcm_encrypt(apiv3_key: str, nonce_str: str, plaintext: bytes, associated_data: str) -> str:
    ct = AESGCM(apiv3_key.encode()).encrypt(nonce_str.encode(), plaintext, associated_data.encode())
    return base64.b64encode(ct).decode()


def aes_gcm_decrypt(apiv3_key: str, nonce_str: str, ciphertext_b64: str, associated_data: str) -> bytes:
    """Raises InvalidTag (tampered / wrong key) or ValueError (bad base64, bad nonce)."""
    return AESGCM(apiv3_key.encode()).decrypt(
        nonce_str.encode(), base64.b64decode(ciphertext_b64, validate=True), associated_data.encode()
    )


def rsa_oaep_encrypt(public_key_pem: str, plaintext: str) -> str:
    """Sensitive request fields (e.g. transfer ``user_name``): RSA-OAEP with SHA-1, as WeChat Pay requires."""
    ct = load_public_key(public_key_pem).encrypt(
        plaintext.encode(), padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )
    return base64.b64encode(ct).decode()


def rsa_oaep_decrypt(private_key_pem: str, ciphertext_b64: str) -> str:
    pt = load_private_key(private_key_pem).decrypt(
        base64.b64decode(ciphertext_b64),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    )
    return pt.decode()


# ---- platform certificates (the older "平台证书" mode, before 微信支付公钥) ---------------------------

def self_signed_certificate_pem(private_key_pem: str, common_name: str, days: int = 1825) -> str:
    """An X.509 certificate for ``private_key_pem`` (the sandbox's stand-in platform certificate)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    key = load_private_key(private_key_pem)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def normalize_serial(serial: str) -> str:
    """Certificate serials travel as hex (Wechatpay-Serial, /v3/certificates' serial_no) in either
    case and sometimes with leading zeros; compare them as numbers, written one way."""
    try:
        return format(int(serial, 16), "X")
    except (TypeError, ValueError):
        return serial


def certificate_serial(cert_pem: str) -> str:
    from cryptography import x509

    return format(x509.load_pem_x509_certificate(cert_pem.encode()).serial_number, "X")


def certificate_validity(cert_pem: str) -> tuple[float, float]:
    """(not before, not after) as epoch seconds."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
