"""What a credential check adds to a request: Authenticator.identify per credential kind.

    .venv/bin/python bench/bench_auth.py [--rounds 5] [--calls 2000] [--out FILE]

Every kind is timed in each round, rounds alternate, medians are reported with the ratio to
the ticket-token baseline (a ticket token is only recognised here; the ticket's script checks
its hash in Redis, as before player tokens existed). "cold" signs a new token for every call
(the first request of a token: the signature is verified); "warm" repeats one token (a client
polling with the same token: the verified claims come from a bounded cache until exp).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mmserver.auth import Authenticator  # noqa: E402
from mmserver.config import AuthConfig  # noqa: E402

SECRET = "bench-jwt-secret-0123456789abcdef0123456789"
KEYS = tuple(f"backend-key-{i:02d}-0123456789abcdef" for i in range(3))


def _pem(private) -> str:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _tokens(private, algorithm: str, count: int) -> list[str]:
    exp = int(time.time()) + 3600
    return [f"Bearer {jwt.encode({'sub': f'player-{i}', 'exp': exp, 'mmr': 1500}, private, algorithm=algorithm)}"
            for i in range(count)]


def _per_call_us(authenticator: Authenticator, headers: list[str]) -> float:
    identify = authenticator.identify
    started = time.perf_counter()
    for header in headers:
        identify(header)
    return (time.perf_counter() - started) / len(headers) * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "auth.json")
    args = parser.parse_args(argv)

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    setups = {
        "HS256": (AuthConfig(backend_keys=KEYS, player_jwt_key=SECRET, player_jwt_algorithm="HS256"), SECRET),
        "RS256": (AuthConfig(backend_keys=KEYS, player_jwt_key=_pem(rsa_key), player_jwt_algorithm="RS256"), rsa_key),
        "ES256": (AuthConfig(backend_keys=KEYS, player_jwt_key=_pem(ec_key), player_jwt_algorithm="ES256"), ec_key),
    }
    calls = args.calls
    samples: dict[str, list[float]] = {}
    for _round in range(args.rounds):
        hs = Authenticator(setups["HS256"][0], "server-token-0123456789")
        cases = {
            "ticket token (baseline)": (hs, ["Bearer Zm9vYmFyYmF6cXV4cXV1eHh5enp5eHd2dXRz"] * calls),
            "backend key (3 keys)": (hs, [f"Bearer {KEYS[2]}"] * calls),
        }
        for algorithm, (config, key) in setups.items():
            cold = _tokens(key, algorithm, calls if algorithm == "HS256" else max(1, calls // 10))
            cases[f"player JWT {algorithm} cold"] = (Authenticator(config, None), cold)
            warm_auth = Authenticator(config, None)
            warm_auth.identify(cold[0])
            cases[f"player JWT {algorithm} warm"] = (warm_auth, [cold[0]] * calls)
        for name, (authenticator, headers) in cases.items():
            samples.setdefault(name, []).append(_per_call_us(authenticator, headers))
    baseline = statistics.median(samples["ticket token (baseline)"])
    results = []
    print(f"{'credential':32} {'median us/call':>15} {'added us':>9}")
    for name, values in samples.items():
        median = statistics.median(values)
        results.append({"credential": name, "us_per_call_median": round(median, 2),
                        "added_us": round(median - baseline, 2), "rounds": [round(v, 2) for v in values]})
        print(f"{name:32} {median:15.2f} {median - baseline:9.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"calls": calls, "rounds": args.rounds, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
