#!/usr/bin/env python3
"""Generates plug-in CA material for the differential tests (tests/differential.rs).

    gen_cases.py corpus OUTDIR              the named edge-case corpus, one directory per case
    gen_cases.py random OUTDIR SEED COUNT   COUNT randomized mutations of valid material, reproducible by SEED

Each case directory holds root-cert.pem, ca-cert.pem, ca-key.pem and cert-chain.pem, as istiod mounts them.
The Python `cryptography` package builds what rcgen cannot (SHA-1 signatures, PrintableString names,
unknown critical extensions, critical SKIDs, RSA-PSS signatures); the openssl CLI makes explicit-curve SEC1
keys; X.509 v1 certificates are made by re-signing a v3 TBS without its version and extensions.

Every case is described by a parameter dict (see `base()`), so a randomized case is a few random edits of
one; the dict is printed into `case.json` to reproduce a failure.
"""

import copy
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DAY = dt.timedelta(days=1)
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")

# ---- keys: EC derived from the seed (reproducible), RSA made once per run (slow to generate) ----------------

_rsa_cache = {}
CURVES = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
ORDER_BITS = {"p256": 250, "p384": 380, "p521": 515}


def make_key(kind, rng):
    if kind in CURVES:
        return ec.derive_private_key(rng.getrandbits(ORDER_BITS[kind]) + 1, CURVES[kind])
    if kind.startswith("rsa"):
        bits = int(kind[3:] or 2048)
        slot = (bits, rng.randrange(3))
        if slot not in _rsa_cache:
            _rsa_cache[slot] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return _rsa_cache[slot]
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    raise ValueError(kind)


HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}

# ---- certificate parameters ------------------------------------------------------------------------------


def ca_params(cn, key):
    return {
        "cn": cn,
        "key": key,
        "ca": True,  # True, False, or None (no basicConstraints)
        "pathlen": None,
        "ku": "certsign",  # "certsign", "nocertsign" or None
        "eku": None,  # None or a list of "server", "client", "any", "code"
        "unknown_ext": None,  # None, "critical" or "noncritical"
        "crit_skid": False,
        "nb": -1,  # validity, in days from now
        "na": 3650,
        "name_enc": "utf8",  # how the subject CN is encoded ("utf8" or "printable")
        "issuer_enc": None,  # re-encode the issuer name of this certificate ("utf8"/"printable")
        "san": None,  # None, "uri" or "dns"
        "nc": None,  # None or [permit|exclude, dns|uri, match(bool)]
        "hash": "sha256",
        "pss": False,
        "v1": False,
        "skid": True,
    }


def base(key="p256", levels=1):
    """A valid PKI: root → [mid →] intermediate, chain = intermediate [, mid], root."""
    p = {
        "root": ca_params("Root CA", key),
        "mid": ca_params("Middle CA", key) if levels > 1 else None,
        "inter": ca_params("Intermediate CA", key),
        "inter_signer": "parent",  # "parent", "other-root" (same name, other key)
        "key_format": "pkcs8",  # "pkcs8", "sec1", "pkcs1", "pkcs8-as-ec", "sec1-as-pkcs8", "explicit-curve",
        #                         "encrypted", "ec-params-first"
        "key_swap": False,
        "roots": ["root"],  # entries: "root", "other" (an unrelated root), "expired" (an expired unrelated root)
        "chain": "full",  # "full", "no-root", "inter-only", "reversed", "missing-mid", "other-inter", "empty-mid"
        "ca_append_chain": False,
        "format": "plain",  # "plain", "crlf", "junk", "bag", "blank", "trailing-junk"
        "truncate": None,  # None, "root-last", "chain-last", "ca-tail"
    }
    p["inter"]["san"] = "uri"
    p["inter"]["pathlen"] = 0 if levels == 1 else None
    return p


def name(cn, enc):
    t = _ASN1Type.PrintableString if enc == "printable" else _ASN1Type.UTF8String
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"), x509.NameAttribute(NameOID.COMMON_NAME, cn, _type=t)])


EKUS = {
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "code": ExtendedKeyUsageOID.CODE_SIGNING,
}


def build(cp, key, issuer_cp, issuer_key, serial):
    """One certificate from its parameters, signed by issuer_key (itself when issuer_cp is cp)."""
    subject = name(cp["cn"], cp["name_enc"])
    issuer = name(issuer_cp["cn"], cp["issuer_enc"] or issuer_cp["name_enc"])
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW + cp["nb"] * DAY)
        .not_valid_after(NOW + cp["na"] * DAY)
    )
    if cp["ca"] is not None:
        b = b.add_extension(x509.BasicConstraints(ca=cp["ca"], path_length=cp["pathlen"] if cp["ca"] else None), critical=True)
    if cp["ku"]:
        cs = cp["ku"] == "certsign"
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=cs, crl_sign=cs, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    if cp["eku"]:
        b = b.add_extension(x509.ExtendedKeyUsage([EKUS[e] for e in cp["eku"]]), critical=False)
    if cp["skid"]:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=cp["crit_skid"])
    if issuer_cp is not cp and issuer_cp["skid"]:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if cp["san"] == "uri":
        b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://cluster.local/ns/istio-system/sa/istiod")]), critical=False)
    elif cp["san"] == "dns":
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("istiod.istio-system.svc")]), critical=False)
    if cp["nc"]:
        kind, typ, match = cp["nc"]
        if typ == "dns":
            tree = [x509.DNSName("istio-system.svc" if match else "other.example")]
        else:
            tree = [x509.UniformResourceIdentifier("cluster.local" if match else "other.example")]
        b = b.add_extension(
            x509.NameConstraints(permitted_subtrees=tree if kind == "permit" else None, excluded_subtrees=tree if kind == "exclude" else None),
            critical=True,
        )
    if cp["unknown_ext"]:
        b = b.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=cp["unknown_ext"] == "critical")
    if cp["hash"] == "sha1":
        # cryptography refuses to sign with SHA-1: sign with SHA-256, then re-sign the TBS by hand.
        return rebuild(sign(b, issuer_key, dict(cp, hash="sha256")), issuer_key, cp)
    cert = sign(b, issuer_key, cp)
    if cp["v1"]:
        cert = rebuild(cert, issuer_key, cp)
    return cert


def sign(builder, key, cp):
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return builder.sign(key, None)
    h = HASHES[cp["hash"]]()
    if isinstance(key, rsa.RSAPrivateKey) and cp["pss"]:
        return builder.sign(key, h, rsa_padding=padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.DIGEST_LENGTH))
    return builder.sign(key, h)


# ---- DER surgery for v1 certificates ------------------------------------------------------------------------


def tlv(data, i=0):
    tag = data[i]
    n = data[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[j:j + k], "big")
        j += k
    return tag, data[i:j + n], data[j:j + n], j + n


def enc(tag, content):
    n = len(content)
    if n < 0x80:
        head = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + head + content


SHA1_RSA = bytes.fromhex("300d06092a864886f70d0101050500")
SHA1_ECDSA = bytes.fromhex("300906072a8648ce3d0401")


def rebuild(cert, key, cp):
    """Re-signs the certificate's TBS by hand: as X.509 v1 (no version, no extensions) if cp["v1"], and
    with SHA-1 if cp["hash"] is "sha1"."""
    der = cert.public_bytes(serialization.Encoding.DER)
    _, _, body, _ = tlv(der)
    _, _, tbs, end = tlv(body)
    alg = tlv(body, end)[1]
    sha1 = cp["hash"] == "sha1"
    if sha1:
        alg = SHA1_RSA if isinstance(key, rsa.RSAPrivateKey) else SHA1_ECDSA
    items, i, seen_alg = [], 0, False
    while i < len(tbs):
        tag, whole, _, i = tlv(tbs, i)
        if cp["v1"] and tag in (0xA0, 0xA3):
            continue
        if tag == 0x30 and not seen_alg:
            seen_alg = True
            whole = alg
        items.append(whole)
    new_tbs = enc(0x30, b"".join(items))
    h = HASHES[cp["hash"]]()
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(new_tbs, padding.PKCS1v15(), h)
    else:
        sig = key.sign(new_tbs, ec.ECDSA(h))
    return x509.load_der_x509_certificate(enc(0x30, new_tbs + alg + enc(0x03, b"\x00" + sig)))


# ---- assembly -----------------------------------------------------------------------------------------------


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key, fmt):
    P, E = serialization.PrivateFormat, serialization.Encoding
    nope = serialization.NoEncryption()
    if fmt == "encrypted":
        return key.private_bytes(E.PEM, P.PKCS8, serialization.BestAvailableEncryption(b"secret")).decode()
    if fmt in ("sec1", "pkcs1"):
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.private_bytes(E.PEM, P.PKCS8, nope).decode()
        return key.private_bytes(E.PEM, P.TraditionalOpenSSL, nope).decode()
    pkcs8 = key.private_bytes(E.PEM, P.PKCS8, nope).decode()
    if fmt == "pkcs8-as-ec":
        return pkcs8.replace("PRIVATE KEY-----", "EC PRIVATE KEY-----")
    if fmt == "sec1-as-pkcs8":
        trad = key_pem(key, "sec1")
        return trad.replace("-----BEGIN EC PRIVATE KEY", "-----BEGIN PRIVATE KEY").replace("-----END EC PRIVATE KEY", "-----END PRIVATE KEY").replace("RSA PRIVATE KEY", "PRIVATE KEY")
    if fmt in ("explicit-curve", "ec-params-first"):
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            return pkcs8
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
            f.write(key_pem(key, "sec1"))
            f.flush()
            if fmt == "explicit-curve":
                args = ["openssl", "ec", "-in", f.name, "-param_enc", "explicit"]
            else:
                args = ["openssl", "ec", "-in", f.name, "-param_out"]
            return subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return pkcs8


def fmt_value(text, style, rng, label="x"):
    if style == "crlf":
        return text.replace("\n", "\r\n")
    if style == "junk":
        return "subject=CN = something\nissuer=CN = else\n" + text + "\n# trailing comment\n"
    if style == "bag":
        return "Bag Attributes\n    localKeyID: 01 00 00 00\n    friendlyName: " + label + "\n" + text
    if style == "blank":
        return "\n\n" + text.replace("-----\n-----", "-----\n\n\n-----") + "\n\n"
    if style == "trailing-junk":
        return text + "garbage that is not PEM\n"
    return text


def assemble(p, rng):
    keys = {}
    for role in ("root", "mid", "inter"):
        if p[role]:
            keys[role] = make_key(p[role]["key"], rng)
    serial = lambda: rng.getrandbits(63) + 1
    root = build(p["root"], keys["root"], p["root"], keys["root"], serial())
    parent_cp, parent_key = p["root"], keys["root"]
    mid = None
    if p["mid"]:
        mid = build(p["mid"], keys["mid"], p["root"], keys["root"], serial())
        parent_cp, parent_key = p["mid"], keys["mid"]
    if p["inter_signer"] == "other-root":
        parent_key = make_key(p["root"]["key"], rng)
    inter = build(p["inter"], keys["inter"], parent_cp, parent_key, serial())

    roots = []
    for r in p["roots"]:
        if r == "root":
            roots.append(root)
        else:
            ocp = ca_params("Other Root", "p256")
            if r == "expired":
                ocp.update(nb=-30, na=-1)
            okey = make_key("p256", rng)
            roots.append(build(ocp, okey, ocp, okey, serial()))
    chain = {
        "full": [inter] + ([mid] if mid else []) + [root],
        "no-root": [inter] + ([mid] if mid else []),
        "inter-only": [inter],
        "reversed": [root] + ([mid] if mid else []) + [inter],
        "missing-mid": [inter, root],
        "other-inter": None,
    }[p["chain"]]
    if chain is None:
        ocp = copy.deepcopy(p["inter"])
        ocp["cn"] = "Other Intermediate"
        okey = make_key("p256", rng)
        chain = [build(ocp, okey, parent_cp, keys["mid" if mid else "root"], serial())] + ([mid] if mid else []) + [root]
    key = make_key(p["inter"]["key"], rng) if p["key_swap"] else keys["inter"]

    files = {
        "root-cert.pem": "".join(pem(c) for c in roots),
        "ca-cert.pem": pem(inter) + ("".join(pem(c) for c in chain[1:]) if p["ca_append_chain"] else ""),
        "ca-key.pem": key_pem(key, p["key_format"]),
        "cert-chain.pem": "".join(pem(c) for c in chain),
    }
    if p["truncate"]:
        target = {"root-last": "root-cert.pem", "chain-last": "cert-chain.pem", "ca-tail": "ca-cert.pem"}[p["truncate"]]
        v = files[target]
        cut = v.rfind("-----END")
        files[target] = v[: max(cut - 40, 0)]
    return {k: fmt_value(v, p["format"], rng, k) for k, v in files.items()}


def write_case(out, name_, p, rng):
    d = os.path.join(out, name_)
    os.makedirs(d, exist_ok=True)
    for k, v in assemble(p, rng).items():
        with open(os.path.join(d, k), "w", newline="") as f:
            f.write(v)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(p, f, sort_keys=True)
    return d


# ---- the named corpus ---------------------------------------------------------------------------------------


def corpus():
    """(name, params) for every named edge case."""
    cases = []

    def case(name_, key="p256", levels=1, **edits):
        p = base(key, levels)
        for path, value in edits.items():
            obj, parts = p, path.split("__")
            for part in parts[:-1]:
                obj = obj[part]
            obj[parts[-1]] = value
        cases.append((name_, p))

    case("valid-p256")
    case("valid-p384", key="p384")
    case("valid-rsa2048-pkcs1-key", key="rsa2048", key_format="pkcs1")
    case("valid-rsa2048-pkcs8-key", key="rsa2048")
    case("valid-sec1-key", key_format="sec1")
    case("p521-root-ecdsa-sha512", root__key="p521", inter__hash="sha512")
    case("p521-intermediate-and-key", inter__key="p521", key_format="sec1")
    case("p256-root-signing-with-sha512", inter__hash="sha512")
    case("rsa-sha512", key="rsa2048", inter__hash="sha512")
    case("rsa-pss-signature", key="rsa2048", inter__pss=True)
    case("rsa-pss-sha384-root", key="rsa2048", root__pss=True, root__hash="sha384", inter__pss=True, inter__hash="sha384")
    case("intermediate-signed-sha1-rsa", key="rsa2048", inter__hash="sha1")
    case("intermediate-signed-ecdsa-sha1", inter__hash="sha1")
    case("root-self-signed-sha1", key="rsa2048", root__hash="sha1")
    case("intermediate-unknown-critical-extension", inter__unknown_ext="critical")
    case("intermediate-unknown-noncritical-extension", inter__unknown_ext="noncritical")
    case("root-unknown-critical-extension", root__unknown_ext="critical")
    case("intermediate-critical-skid", inter__crit_skid=True)
    case("root-name-constraints-exclude-uri-san", root__nc=["exclude", "uri", True])
    case("root-name-constraints-permit-other-uri", root__nc=["permit", "uri", False])
    case("root-name-constraints-permit-matching-uri", root__nc=["permit", "uri", True])
    case("root-name-constraints-exclude-dns-san", inter__san="dns", root__nc=["exclude", "dns", True])
    case("root-name-constraints-no-san-below", inter__san=None, root__nc=["exclude", "uri", True])
    case("pkcs8-under-ec-private-key-label", key_format="pkcs8-as-ec")
    case("sec1-under-private-key-label", key_format="sec1-as-pkcs8")
    case("sec1-explicit-curve-parameters", key_format="explicit-curve")
    case("ec-parameters-block-before-key", key_format="ec-params-first")
    case("encrypted-pkcs8-key", key_format="encrypted")
    case("root-printablestring-subject-issuer-alike", root__name_enc="printable")
    case("issuer-printablestring-root-utf8", inter__issuer_enc="printable")
    case("intermediate-eku-client-auth-only", inter__eku=["client"])
    case("intermediate-eku-server-auth-only", inter__eku=["server"])
    case("intermediate-eku-server-and-client", inter__eku=["server", "client"])
    case("intermediate-eku-any", inter__eku=["any"])
    case("root-eku-client-auth-only", root__eku=["client"])
    case("root-eku-code-signing", root__eku=["code"])
    case("root-pathlen-0-with-two-levels", levels=2, root__pathlen=0)
    case("root-pathlen-1-with-two-levels", levels=2, root__pathlen=1)
    case("root-pathlen-0-one-level", root__pathlen=0)
    case("mid-pathlen-0-with-intermediate", levels=2, mid__pathlen=0)
    case("intermediate-pathlen-0-under-mid", levels=2, inter__pathlen=0)
    case("three-level-chain", levels=2)
    case("three-level-chain-missing-mid", levels=2, chain="missing-mid")
    case("expired-root", root__nb=-30, root__na=-1)
    case("expired-intermediate", inter__nb=-30, inter__na=-1)
    case("expired-mid", levels=2, mid__nb=-30, mid__na=-1)
    case("not-yet-valid-root", root__nb=2, root__na=30)
    case("not-yet-valid-intermediate", inter__nb=2)
    case("not-yet-valid-mid", levels=2, mid__nb=2)
    case("v1-root", key="rsa2048", root__v1=True)
    case("v1-root-ec", root__v1=True)
    case("v1-intermediate", inter__v1=True)
    case("ed25519-intermediate", inter__key="ed25519")
    case("ed25519-root", root__key="ed25519")
    case("duplicate-root", roots=["root", "root"])
    case("crlf-line-endings", format="crlf")
    case("text-around-blocks", format="junk")
    case("pkcs12-bag-attributes", format="bag")
    case("blank-lines-between-blocks", format="blank")
    case("trailing-junk", format="trailing-junk")
    case("ca-cert-with-chain-appended", ca_append_chain=True)
    case("key-of-another-intermediate", key_swap=True)
    case("cert-chain-of-another-intermediate", chain="other-inter")
    case("cert-chain-reversed", chain="reversed")
    case("cert-chain-without-root", chain="no-root")
    case("rotation-phase-a", roots=["root"])
    case("rotation-phase-a-plus-b", roots=["root", "other"])
    case("rotation-phase-b-plus-a", roots=["other", "root"])
    case("rotation-phase-b-only", roots=["other"])
    case("root-not-ca-v3-without-basic-constraints", root__ca=None)
    case("root-ca-false", root__ca=False)
    case("root-without-key-cert-sign", root__ku="nocertsign")
    case("intermediate-not-ca", inter__ca=False)
    case("intermediate-without-basic-constraints", inter__ca=None)
    case("intermediate-without-key-cert-sign", inter__ku="nocertsign")
    case("intermediate-signed-by-rekeyed-root", inter_signer="other-root")
    case("expired-unrelated-root-in-bundle", roots=["root", "expired"])
    case("rsa4096-root-three-roots", root__key="rsa4096", roots=["other", "root", "expired"])
    case("truncated-last-root-block", roots=["root", "other"], truncate="root-last")
    case("truncated-cert-chain-root", truncate="chain-last")
    case("truncated-ca-cert", truncate="ca-tail")
    # RSA-PSS keys: the RSA-PSS SubjectPublicKeyInfo is made by openssl below (cryptography can't).
    return cases


# ---- randomized mutations -----------------------------------------------------------------------------------

MUTATIONS = [
    ("inter__hash", ["sha1", "sha256", "sha384", "sha512"]),
    ("root__hash", ["sha1", "sha256", "sha512"]),
    ("inter__pss", [True, False]),
    ("inter__eku", [None, ["server"], ["client"], ["server", "client"], ["any"], ["code"]]),
    ("root__eku", [None, ["client"], ["server", "client"], ["any"]]),
    ("inter__unknown_ext", [None, "critical", "noncritical"]),
    ("root__unknown_ext", [None, "critical", "noncritical"]),
    ("inter__crit_skid", [True]),
    ("inter__ca", [True, False, None]),
    ("root__ca", [True, False, None]),
    ("inter__ku", ["certsign", "nocertsign", None]),
    ("root__ku", ["certsign", "nocertsign", None]),
    ("root__pathlen", [None, 0, 1]),
    ("inter__pathlen", [None, 0]),
    ("inter__san", [None, "uri", "dns"]),
    ("root__nc", [None, ["permit", "uri", True], ["permit", "uri", False], ["exclude", "uri", True], ["exclude", "dns", True], ["permit", "dns", False]]),
    ("root__name_enc", ["utf8", "printable"]),
    ("inter__issuer_enc", [None, "printable", "utf8"]),
    ("root__nb", [-1, -10, 3]),
    ("root__na", [3650, -1, 1]),
    ("inter__nb", [-1, 2]),
    ("inter__na", [3650, -1]),
    ("inter__key", ["p256", "p384", "p521", "rsa2048"]),
    ("root__key", ["p256", "p384", "p521", "rsa2048"]),
    ("inter__v1", [True]),
    ("root__v1", [True]),
    ("key_format", ["pkcs8", "sec1", "pkcs8-as-ec", "sec1-as-pkcs8", "explicit-curve", "encrypted", "ec-params-first"]),
    ("key_swap", [True]),
    ("roots", [["root"], ["root", "root"], ["other", "root"], ["other"], ["root", "expired"]]),
    ("chain", ["full", "no-root", "inter-only", "reversed", "other-inter"]),
    ("ca_append_chain", [True]),
    ("format", ["plain", "crlf", "junk", "bag", "blank", "trailing-junk"]),
    ("truncate", [None, "root-last", "chain-last", "ca-tail"]),
    ("inter_signer", ["parent", "other-root"]),
]


def randomized(rng, count):
    for i in range(count):
        levels = 2 if rng.random() < 0.2 else 1
        key = rng.choice(["p256", "p256", "p256", "p384", "rsa2048"])
        p = base(key, levels)
        if levels == 2:
            MUT = MUTATIONS + [("mid__pathlen", [None, 0, 1]), ("mid__eku", [None, ["client"]]), ("mid__na", [3650, -1]), ("chain", ["missing-mid"])]
        else:
            MUT = MUTATIONS
        for _ in range(rng.choice([1, 1, 2, 3])):
            path, values = rng.choice(MUT)
            obj, parts = p, path.split("__")
            for part in parts[:-1]:
                obj = obj[part]
            obj[parts[-1]] = copy.deepcopy(rng.choice(values))
        for role in ("root", "mid", "inter"):
            if p[role] and p[role]["na"] <= p[role]["nb"]:
                p[role]["nb"] = p[role]["na"] - 30
        if p["root"]["v1"] or p["inter"]["v1"]:
            # v1 re-signing supports RSA and ECDSA with the chosen hash only.
            for role in ("root", "mid", "inter"):
                if p[role]:
                    p[role]["pss"] = False
        yield f"random-{i:05d}", p


def main():
    mode, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    if mode == "corpus":
        rng = random.Random(10)
        for name_, p in corpus():
            print(write_case(out, name_, p, rng))
        print(rsa_pss_key_case(out))
    elif mode == "random":
        seed, count = int(sys.argv[3]), int(sys.argv[4])
        rng = random.Random(seed)
        for name_, p in randomized(rng, count):
            print(write_case(out, name_, p, rng))
    else:
        sys.exit(f"unknown mode {mode}")


def rsa_pss_key_case(out):
    """ca-cert with an RSA-PSS key (SPKI id-RSASSA-PSS) and that key as PKCS#8, made with openssl."""
    d = os.path.join(out, "rsa-pss-public-key-intermediate")
    os.makedirs(d, exist_ok=True)
    rng = random.Random(11)
    rkey = make_key("p256", rng)
    rcp = ca_params("Root CA", "p256")
    root = build(rcp, rkey, rcp, rkey, 1)
    with tempfile.TemporaryDirectory() as t:
        k, csr = os.path.join(t, "k.pem"), os.path.join(t, "c.csr")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048", "-out", k], check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-key", k, "-subj", "/O=Example/CN=Intermediate CA", "-out", csr], check=True, capture_output=True)
        req = x509.load_pem_x509_csr(open(csr, "rb").read())
        key_text = open(k).read()
    cp = ca_params("Intermediate CA", "p256")
    b = (
        x509.CertificateBuilder().subject_name(req.subject).issuer_name(name("Root CA", "utf8")).public_key(req.public_key())
        .serial_number(2).not_valid_before(NOW - DAY).not_valid_after(NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    inter = sign(b, rkey, cp)
    files = {"root-cert.pem": pem(root), "ca-cert.pem": pem(inter), "ca-key.pem": key_text, "cert-chain.pem": pem(inter) + pem(root)}
    for n, v in files.items():
        with open(os.path.join(d, n), "w") as f:
            f.write(v)
    return d


if __name__ == "__main__":
    main()
