"""``edge-resnet gallery enroll|eval|glyphs``: enrol identities, evaluate open-set, make test data.

Registered under the ``gallery`` command by :mod:`edge_resnet.runtime.cli`. Imports nothing
heavy at registration so ``edge-resnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_gallery_commands"]


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a rate in (0, 1), e.g. 0.01; got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_backend(p: argparse.ArgumentParser) -> None:
    from edge_resnet.backends.base import backend_names

    p.add_argument("--backend", default="onnxruntime", choices=backend_names(),
                   help="inference backend (default onnxruntime)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU inference threads (0: the backend's default)")


def add_gallery_commands(gsub: Any) -> None:
    """Add the gallery actions to the ``gallery`` sub-parser group."""
    enroll = gsub.add_parser(
        "enroll", help="enrol one identity per subfolder of DIR (one photo each is enough)",
        description="Enrol one identity per subfolder of FOLDER. The match threshold is chosen "
                    "for --target-far from impostor scores between the enrolled identities "
                    "and stored with how it was derived; the file carries a content hash and, "
                    "with --sign-key, the fleet signature.")
    enroll.add_argument("folder", help="folder with one subfolder of images per identity")
    enroll.add_argument("--model", required=True, help="ONNX exported with --features")
    enroll.add_argument("--out", required=True, help="gallery file to write (.npz)")
    enroll.add_argument("--target-far", type=_rate, default=0.01,
                        help="false accept rate the threshold is chosen for (default 0.01)")
    enroll.add_argument("--sign-key", help="fleet private key (bundle keygen) to sign with")
    enroll.add_argument("--batch", type=_positive_int, default=16)
    _add_backend(enroll)
    enroll.set_defaults(func=_enroll)

    verify = gsub.add_parser(
        "verify", help="check a gallery file: fields, content hash, signature, model",
        description="Load GALLERY as `run --gallery` would and print what it holds; exit 2 "
                    "when any field, the content hash, the signature (with --cert) or the "
                    "model fingerprint (with --model) does not check out.")
    verify.add_argument("gallery", help="gallery file (.npz)")
    verify.add_argument("--cert", help="fleet certificate: require a valid signature")
    verify.add_argument("--model", help="ONNX model the gallery must have been enrolled with")
    _add_backend(verify)
    verify.set_defaults(func=_verify)


def _enroll(args: argparse.Namespace) -> int:
    from edge_resnet.backends import load_backend
    from edge_resnet.runtime.gallery import enroll

    with load_backend(args.backend, args.model, threads=args.threads) as backend:
        gallery = enroll(backend, args.folder, batch_size=args.batch,
                         target_far=args.target_far)
    gallery.save(args.out, sign_key=args.sign_key)
    info = gallery.threshold_info
    print(json.dumps({"gallery": args.out, "identities": len(gallery.names),
                      "images": sum(gallery.counts), "signed": bool(gallery.signature),
                      "match_threshold": round(gallery.suggested_threshold, 6),
                      "target_far": info["target_far"], "estimated_far": info["estimated_far"],
                      "estimated_tar": info["estimated_tar"],
                      "impostor_scores": info["impostor_scores"],
                      "genuine_scores": info["genuine_scores"],
                      "content_sha256": gallery.content_sha256}))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edge_resnet.runtime.gallery import Gallery

    gallery = Gallery.load(args.gallery, certificate=args.cert)
    if args.model is not None:
        from edge_resnet.backends import load_backend

        with load_backend(args.backend, args.model, threads=args.threads) as backend:
            gallery.check_model(backend.spec)
    print(json.dumps({"gallery": args.gallery, "identities": len(gallery.names),
                      "dimensions": int(gallery.embeddings.shape[1]),
                      "match_threshold": gallery.suggested_threshold,
                      "threshold_info": gallery.threshold_info,
                      "fingerprint": gallery.fingerprint,
                      "model_checked": args.model is not None,
                      "signed": bool(gallery.signature), "signature_checked": bool(args.cert),
                      "content_sha256": gallery.content_sha256}))
    return 0
