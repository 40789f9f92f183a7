"""`make demo` (`python -m atdata.demo`): the whole federation on one machine, end to end.

Starts a local ATProto network (a PLC directory and two PDSes) and an AppView that follows
both PDSes; account A on PDS1 writes scikit-learn's handwritten digits as typed samples and
publishes their schema, the dataset (shards as PDS blobs) and a lens; the AppView indexes them;
a search finds the dataset; account B on PDS2 resolves it by at:// URI, trains a logistic
regression on the train split's batches and reports the accuracy on the test split. Everything
the demo starts is stopped when it ends, also on Ctrl-C.

Needs the `demo` extra (scikit-learn, for its bundled `load_digits`) and the `atmosphere` and
`appview` extras; `make demo` installs them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray

import atdata

__all__ = ["Digit", "DigitFeatures", "digit_features", "main"]

TOTAL_STEPS = 10
SEARCH_QUERY = "handwritten digits"


@atdata.packable(name="demo.Digit", version="1.0.0")
class Digit:
    """An 8x8 handwritten digit (grey levels 0-16) and its label, from scikit-learn."""

    image: Annotated[NDArray[np.uint8], atdata.Shape(8, 8)]
    label: int


@atdata.packable(name="demo.DigitFeatures", version="1.0.0")
class DigitFeatures:
    """A digit as a linear model takes it: 64 pixels scaled to [0, 1]."""

    features: Annotated[NDArray[np.float32], atdata.Shape(64)]
    label: int


@atdata.lens
def digit_features(d: Digit) -> DigitFeatures:
    """Flatten the 8x8 image and scale grey levels 0-16 to [0, 1]."""
    return DigitFeatures(features=d.image.reshape(64).astype(np.float32) / 16.0, label=d.label)


# -- output -----------------------------------------------------------------------------------


class Steps:
    """One readable line per step, with its duration."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0

    @contextlib.contextmanager
    def step(self, doing: str) -> Iterator[list[str]]:
        """Prints `[ n/N] <done text> (<seconds>)`; the body appends the text to show."""
        self.n += 1
        started = time.monotonic()
        done: list[str] = []
        yield done
        text = done[0] if done else doing
        print(f"[{self.n:2d}/{self.total}] {text} ({time.monotonic() - started:.1f} s)", flush=True)


def human_bytes(n: int) -> str:
    return f"{n / 1000:.0f} KB" if n < 1_000_000 else f"{n / 1e6:.1f} MB"


# -- processes --------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the demo dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def start_appview(workdir: Path, net: Any, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "atdata.cli", "appview", "serve",
           "--db", f"sqlite:///{workdir / 'appview.sqlite'}", "--plc", net.plc_url,
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    for pds in net.pds:
        cmd += ["--firehose", pds.ws_url]
    with open(workdir / "appview.log", "wb") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# -- data -------------------------------------------------------------------------------------


def digits_split(seed: int = 0, test_fraction: float = 0.2) -> tuple[list[Digit], list[Digit]]:
    """scikit-learn's 1,797 digits as typed samples, shuffled and split train/test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit(
            "the demo needs scikit-learn (the `demo` extra): pip install 'atdata[demo]'"
        ) from None
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)  # grey levels 0..16
    order = np.random.default_rng(seed).permutation(len(images))
    samples = [Digit(image=images[i], label=int(bunch.target[i])) for i in order]
    n_test = int(round(len(samples) * test_fraction))
    return samples[n_test:], samples[:n_test]


def train_logistic(
    batches: Callable[[int], Any], epochs: int, classes: int = 10, lr: float = 0.5
) -> tuple[np.ndarray, np.ndarray, int]:
    """Multinomial logistic regression by mini-batch gradient descent (plain numpy)."""
    weights = np.zeros((64, classes), dtype=np.float64)
    bias = np.zeros(classes, dtype=np.float64)
    seen = 0
    for epoch in range(epochs):
        for batch in batches(epoch):
            x = np.asarray(batch.features, dtype=np.float64)
            y = np.asarray(batch.label)
            logits = x @ weights + bias
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(y)), y] -= 1.0  # d(cross-entropy)/d(logits)
            weights -= lr * (x.T @ p / len(y) + 1e-4 * weights)
            bias -= lr * p.mean(axis=0)
            seen += len(y)
    return weights, bias, seen


# -- the walk-through -------------------------------------------------------------------------


def run(workdir: Path, epochs: int = 15, serve: bool = False) -> float:
    """The demo itself; returns the test accuracy. Stops what it started before returning
    (with ``serve``, only after Ctrl-C, so the web page and the network can be explored)."""
    from .appview_client import AppViewClient
    from .atmosphere import Client, load_dataset
    from .devnet import Devnet, check_install, create_account, default_home, free_ports, install

    steps = Steps(TOTAL_STEPS)
    with contextlib.ExitStack() as stack:
        # 1. the network
        home = default_home()
        reason = check_install(home)
        if reason is not None:
            print(f"installing the local ATProto network into {home} ({reason}); the first time "
                  "takes a few minutes ...", flush=True)  # fmt: skip
            install(home)
        with steps.step("local network") as done:
            plc_port, pds1_port, pds2_port, appview_port = free_ports(4)
            net = Devnet(home, plc_port, (pds1_port, pds2_port), run_dir=workdir / "devnet",
                         name="demo")  # fmt: skip
            info = net.up(stop_with_parent=True)
            stack.callback(net.down)
            os.environ["ATDATA_PLC_URL"] = info.plc_url
            os.environ["ATDATA_ALLOW_PRIVATE_NETWORK"] = "1"  # everything is on 127.0.0.1
            done.append(
                f"local ATProto network up: PLC {info.plc_url}, PDS1 {info.pds[0].url}, "
                f"PDS2 {info.pds[1].url}"
            )

        # 2. the AppView
        with steps.step("AppView") as done:
            appview = start_appview(workdir, info, appview_port)
            stack.callback(stop_process, appview)
            appview_url = f"http://127.0.0.1:{appview_port}"
            av = stack.enter_context(AppViewClient(appview_url, timeout=10))

            def healthy() -> bool:
                if appview.poll() is not None:
                    log = (workdir / "appview.log").read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"the AppView exited with {appview.returncode}:\n{log}")
                try:
                    av.describe()
                except atdata.AtdataError:
                    return False
                return True

            wait_until(healthy, 60, "the AppView to answer")
            done.append(
                f"AppView up at {appview_url} (embedded SQLite, following PDS1 and PDS2; "
                f"web page at {appview_url}/)"
            )

        # 3. two people on two servers
        with steps.step("accounts") as done:
            tag = secrets.token_hex(3)
            pw_a, pw_b = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
            a = create_account(info.pds[0].url, info.pds[0].handle(f"alice{tag}"), pw_a,
                               f"alice{tag}@example.com")  # fmt: skip
            b = create_account(info.pds[1].url, info.pds[1].handle(f"bob{tag}"), pw_b,
                               f"bob{tag}@example.com")  # fmt: skip
            alice = Client(a.pds_url).login(a.handle, pw_a)
            bob = Client(b.pds_url).login(b.handle, pw_b)
            done.append(f"accounts: A = {a.handle} on PDS1, B = {b.handle} on PDS2")

        # 4. typed samples -> shards
        with steps.step("shards") as done:
            train, test = digits_split()
            shard_dir = workdir / "shards"
            shard_dir.mkdir(parents=True, exist_ok=True)
            train_shards = atdata.write_samples(train, str(shard_dir / "train-%06d.tar"),
                                                maxcount=500)  # fmt: skip
            test_shards = atdata.write_samples(test, str(shard_dir / "test-%06d.tar"),
                                               maxcount=500)  # fmt: skip
            shards = train_shards + test_shards
            done.append(
                f"wrote {len(train) + len(test)} scikit-learn digits as demo.Digit samples: "
                f"train {len(train)} in {len(train_shards)} shards, test {len(test)} in "
                f"{len(test_shards)} shard ({human_bytes(sum(s.bytes for s in shards))})"
            )

        # 5. schema
        with steps.step("schema") as done:
            schema_ref = alice.publish_schema(Digit)
            done.append(f"A published schema demo.Digit 1.0.0: {schema_ref}")

        # 6. dataset + lens
        with steps.step("dataset") as done:
            dataset_ref = alice.publish_dataset(
                shards,
                name="sklearn-digits",
                schema=schema_ref,
                description=(
                    "Optical recognition of handwritten digits (UCI), as shipped with "
                    "scikit-learn: 8x8 grey-level images with their labels 0-9."
                ),
                tags=["vision", "digits", "demo"],
                license="CC-BY-4.0",
                splits={
                    "train": list(range(len(train_shards))),
                    "test": [len(train_shards) + i for i in range(len(test_shards))],
                },
                progress=False,
            )
            lens_ref = alice.publish_lens(digit_features)
            done.append(
                f"A published dataset sklearn-digits ({len(shards)} shards as blobs on PDS1): "
                f"{dataset_ref}; lens demo.Digit -> demo.DigitFeatures: {lens_ref}"
            )

        # 7. indexing
        with steps.step("index") as done:

            def indexed() -> bool:
                # every record A published, the lens (written last) included
                try:
                    av.get_dataset(str(dataset_ref))
                except atdata.ResolutionError:
                    return False
                lenses = av.list_lenses(source=str(schema_ref)).items
                return any(x.uri == str(lens_ref) for x in lenses)

            wait_until(indexed, 60, "the AppView to index the dataset and lens", interval=0.1)
            counts = av.describe().get("counts") or {}
            done.append(
                "AppView verified and indexed the records from PDS1's firehose"
                + (
                    f" (schemas {counts.get('schemas')}, datasets {counts.get('datasets')}, "
                    f"lenses {counts.get('lenses')})"
                    if counts
                    else ""
                )
            )

        # 8. search
        with steps.step("search") as done:
            hits = av.search(SEARCH_QUERY, tags=["vision"])
            if not hits.datasets:
                raise RuntimeError(f"searching {SEARCH_QUERY!r} found nothing")
            top = hits.datasets[0]
            uri = top.uri
            done.append(
                f"search {SEARCH_QUERY!r} (tag vision) -> {len(hits.datasets)} result: "
                f"{top.name} by {top.get('handle') or top.did}, {top.samples} samples, {uri}"
            )

        # 9. B resolves the URI
        with steps.step("resolve") as done:
            bob.load_lens(str(lens_ref), trust=True)  # imports it only if its sha256 matches
            train_ds = load_dataset(uri, sample_type=Digit, split="train", appview=appview_url)
            test_ds = load_dataset(uri, sample_type=Digit, split="test", appview=appview_url)
            done.append(
                f"B ({b.handle}) resolved the URI through PLC -> PDS1 (record cid "
                f"{train_ds.cid}): train {len(train_ds)} samples, test {len(test_ds)}; "
                "lens trusted after its sha256 matched"
            )

        # 10. train on batches
        with steps.step("train") as done:
            features = train_ds.as_type(DigitFeatures)
            weights, bias, seen = train_logistic(
                lambda epoch: features.shuffled(batch_size=64, seed=epoch), epochs
            )
            correct = total = 0
            for batch in test_ds.as_type(DigitFeatures).ordered(batch_size=256):
                predicted = np.argmax(np.asarray(batch.features) @ weights + bias, axis=1)
                correct += int((predicted == np.asarray(batch.label)).sum())
                total += len(batch.label)
            done.append(
                f"B trained a logistic regression (numpy) on the train split's batches: "
                f"{epochs} epochs x {len(train_ds)} samples in batches of 64 ({seen} seen)"
            )
        accuracy = correct / total
        print(f"test accuracy: {accuracy:.3f} ({correct}/{total} test digits)", flush=True)
        if serve:
            print(
                f"serving: web page {appview_url}/ , dataset {uri} (also: export "
                f"ATDATA_PLC_URL={info.plc_url} ATDATA_ALLOW_PRIVATE_NETWORK=1 "
                f"ATDATA_APPVIEW={appview_url}); Ctrl-C stops everything",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while appview.poll() is None:
                    time.sleep(0.5)
        stopping = time.monotonic()
    print(
        f"stopped everything the demo started (AppView, network) in "
        f"{time.monotonic() - stopping:.1f} s",
        flush=True,
    )
    return accuracy


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m atdata.demo",
        description="atdata end to end on a local network: publish, index, search, resolve, train.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="folder for shards, logs and the index (default: a temporary folder, removed after)",
    )
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the network and the AppView running after training, until Ctrl-C",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    # A shell starts background jobs with SIGINT ignored; `kill -INT` must still stop the demo.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="atdata-demo-")) if own_dir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    print("atdata demo: publish a typed dataset on one server, find it, train on it from another",
          flush=True)  # fmt: skip
    started = time.monotonic()
    try:
        accuracy = run(workdir, epochs=args.epochs, serve=args.serve)
    except KeyboardInterrupt:
        print("interrupted: everything the demo started has been stopped", file=sys.stderr)
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
        return 130
    except Exception as exc:  # one clear line; details are in the logs
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
        return 1
    if own_dir:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if accuracy > 0.9 else 1


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy: the published lens then names
    # `atdata.demo:digit_features`, which B can import and check.
    from atdata.demo import main as _main

    sys.exit(_main())
