"""``edge-resnet gallery enroll|eval|glyphs``: enrol identities, evaluate open-set, make test data.

Registered under the ``gallery`` command by :mod:`edge_resnet.runtime.cli`. Imports nothing
heavy at registration so ``edge-resnet --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from edge_resnet.cli_args import (add_batch_args, add_gallery_model_args, add_output_args,
                                  add_report_args, add_seed_args, positive_int)

__all__ = ["add_gallery_commands"]


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a rate in (0, 1), e.g. 0.01; got {text}")
    return value


def _identities_command(gsub: Any, name: str, help: str, description: str,
                        batch_size: int) -> Any:
    """A gallery action over a folder of identities (one subfolder of images each) embedded by
    --model: ``enroll`` and ``eval`` share this shape."""
    p = gsub.add_parser(name, help=help, description=description)
    p.add_argument("folder", help="folder with one subfolder of images per identity")
    add_gallery_model_args(p, True, "ONNX exported with --features")
    add_batch_args(p, batch_size)
    return p


def add_gallery_commands(gsub: Any) -> None:
    """Add the gallery actions to the ``gallery`` sub-parser group."""
    enroll = _identities_command(
        gsub, "enroll", "enrol one identity per subfolder of DIR (one photo each is enough)",
        "Enrol one identity per subfolder of FOLDER. The match threshold is chosen for "
        "--target-far from impostor scores between the enrolled identities and stored with how "
        "it was derived; the file carries a content hash and, with --sign-key, the fleet "
        "signature.", 16)
    add_output_args(enroll, "GALLERY.npz", "gallery file to write (.npz)")
    enroll.add_argument("--target-far", type=_rate, default=0.01,
                        help="false accept rate the threshold is chosen for (default 0.01)")
    enroll.add_argument("--require-resolved", action="store_true",
                        help="fail (exit 2) instead of warning when the enrolment has too few "
                             "impostor pairs to resolve --target-far")
    enroll.add_argument("--sign-key", help="fleet private key (bundle keygen) to sign with")
    enroll.set_defaults(func=_enroll)

    evaluate = _identities_command(
        gsub, "eval", "open-set TAR at FAR of a model's embeddings on unseen identities",
        "Open-set identification on FOLDER (one subfolder of images per identity, identities "
        "the model never saw): for each enrolment size, random photos per identity are "
        "enrolled and the rest are probes; every probe is also scored as a stranger against "
        "the gallery without its own identity. Prints TAR at each FAR, rank-1 and an ROC "
        "table. Make an offline protocol with `edge-resnet gallery glyphs`.", 32)
    evaluate.add_argument("--photos", default="1,5",
                          help="enrolment photos per identity, comma-separated (default 1,5)")
    evaluate.add_argument("--far", default="0.01,0.001",
                          help="false accept rates to report TAR at (default 0.01,0.001)")
    evaluate.add_argument("--draws", type=positive_int, default=5,
                          help="random enrolment draws pooled per size (default 5)")
    add_seed_args(evaluate, 0, "seed of the enrolment draws")
    add_report_args(evaluate, "FILE.json", "write the report as JSON here", "--json")
    evaluate.add_argument("--plots", help="folder to write roc.png into")
    evaluate.set_defaults(func=_evaluate)

    glyphs = gsub.add_parser(
        "glyphs", help="write the offline glyph-identity protocol (train or eval set)",
        description="Render glyph identities from the DejaVu fonts with augmentation: "
                    "--set eval writes 59 Latin letters/digits (for `gallery eval`), --set "
                    "train 65 Cyrillic/Greek letters, --set train-wide those and 846 glyphs of "
                    "other scripts and symbols (911; for `finetune`), one subfolder each. "
                    "Deterministic for the parameters and fonts.")
    glyphs.add_argument("out", help="folder to write (new or empty)")
    glyphs.add_argument("--set", dest="which", choices=("eval", "train", "train-wide"),
                        default="eval")
    glyphs.add_argument("--per-identity", type=positive_int, default=24)
    glyphs.add_argument("--size", type=positive_int, default=32, help="image side in pixels")
    add_seed_args(glyphs, 0, "seed of the augmentation")
    glyphs.set_defaults(func=_glyphs)

    verify = gsub.add_parser(
        "verify", help="check a gallery file: fields, content hash, signature, model",
        description="Load GALLERY as `run --gallery` would and print what it holds; exit 2 "
                    "when any field, the content hash, the signature (with --cert) or the "
                    "model fingerprint (with --model) does not check out.")
    verify.add_argument("gallery", help="gallery file (.npz)")
    verify.add_argument("--cert", help="fleet certificate: require a valid signature")
    add_gallery_model_args(verify, False, "ONNX model the gallery must have been enrolled with")
    verify.set_defaults(func=_verify)


def _enroll(args: argparse.Namespace) -> int:
    from edge_resnet.backends import load_backend
    from edge_resnet.runtime.gallery import enroll

    with load_backend(args.backend, args.model, {"threads": args.threads}) as backend:
        gallery = enroll(backend, args.folder, batch_size=args.batch_size,
                         target_far=args.target_far, require_resolved=args.require_resolved)
    gallery.save(args.out, sign_key=args.sign_key)
    info = gallery.threshold_info
    print(json.dumps({"gallery": args.out, "identities": len(gallery.names),
                      "images": sum(gallery.counts), "signed": bool(gallery.signature),
                      "match_threshold": round(gallery.suggested_threshold, 6),
                      "target_far": info["target_far"], "resolved": info["resolved"],
                      "far_resolution": info["far_resolution"],
                      "estimated_far": info["estimated_far"],
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

        with load_backend(args.backend, args.model, {"threads": args.threads}) as backend:
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


def _list(text: str, kind: Any, what: str) -> Any:
    from edge_resnet.core import InputError

    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from edge_resnet.backends import load_backend
    from edge_resnet.core import InputError
    from edge_resnet.faceid.openset import evaluate_open_set, format_report, report
    from edge_resnet.runtime.gallery import embed_identities, group_by_identity

    photos = _list(args.photos, int, "--photos")
    fars = _list(args.far, float, "--far")
    if not fars or any(not 0.0 < f < 1.0 for f in fars):
        raise InputError(f"--far values are rates in (0, 1), got {args.far!r}")
    if args.plots:
        from edge_resnet.evaluation.plots import require_matplotlib

        require_matplotlib()  # before minutes of inference, not after
    by_name = group_by_identity(args.folder)
    with load_backend(args.backend, args.model, {"threads": args.threads}) as backend:
        feats = embed_identities(backend, by_name, args.batch_size)
    names = list(feats)
    labels = np.concatenate([np.full(len(feats[n]), i) for i, n in enumerate(names)])
    scores = evaluate_open_set(np.concatenate([feats[n] for n in names]), labels, names,
                               photos, args.draws, args.seed)
    rep = report(scores, fars, {"model": str(args.model), "folder": str(args.folder),
                                "images": int(labels.size), "identities": len(names)})
    print(format_report(rep))
    if args.report:
        from edge_resnet.io_utils import atomic_write_json

        atomic_write_json(args.report, rep)
    if args.plots:
        from edge_resnet.faceid.plots import write_roc_plot

        print(f"plot: {write_roc_plot(rep, Path(args.plots) / 'roc.png')}")
    return 0


def _glyphs(args: argparse.Namespace) -> int:
    from edge_resnet.datasets.glyphs import (EVAL_GLYPHS, TRAIN_GLYPHS, WIDE_TRAIN_GLYPHS,
                                             write_glyph_folder)

    glyphs = {"eval": EVAL_GLYPHS, "train": TRAIN_GLYPHS, "train-wide": WIDE_TRAIN_GLYPHS}
    done = write_glyph_folder(args.out, glyphs[args.which], args.per_identity, args.size,
                              args.seed, workers=os.cpu_count() or 1)
    print(json.dumps({"out": args.out, "set": args.which, "identities": done["identities"],
                      "per_identity": args.per_identity, "skipped": done["skipped"],
                      "fonts": len(done["params"]["fonts"])}))
    return 0
