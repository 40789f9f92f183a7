"""The quickstart (shared/seed/quickstart.txt, indentation restored) runs as written.

The code blocks are copied verbatim from the guide, in order, into one script that runs in a
fresh interpreter in an empty directory, as a newcomer would run it.
"""

from __future__ import annotations

import subprocess
import sys

QUICKSTART = r'''
import numpy as np
from numpy.typing import NDArray
import atdata

@atdata.packable
class ImageSample:
    """A sample containing an image with label and confidence."""
    image: NDArray
    label: str
    confidence: float

# Create a single sample
sample = ImageSample(
    image=np.random.rand(224, 224, 3).astype(np.float32),
    label="cat",
    confidence=0.95,
)
# Check serialization
packed_bytes = sample.packed
print(f"Serialized size: {len(packed_bytes):,} bytes")
# Verify round-trip
restored = ImageSample.from_bytes(packed_bytes)
assert np.allclose(sample.image, restored.image)
print("Round-trip successful!")

import webdataset as wds
# Create 100 samples
samples = [
    ImageSample(
        image=np.random.rand(224, 224, 3).astype(np.float32),
        label=f"class_{i % 10}",
        confidence=np.random.rand(),
    )
    for i in range(100)
]
# Write to tar file
with wds.writer.TarWriter("my-dataset-000000.tar") as sink:
    for i, sample in enumerate(samples):
        sink.write({**sample.as_wds, "__key__": f"sample_{i:06d}"})
print("Wrote 100 samples to my-dataset-000000.tar")

# Load dataset with type
dataset = atdata.Dataset[ImageSample]("my-dataset-000000.tar")
# Iterate in order with batching
for batch in dataset.ordered(batch_size=16):
    # NDArray fields are stacked
    images = batch.image # shape: (16, 224, 224, 3)
    # Other fields become lists
    labels = batch.label # list of 16 strings
    confidences = batch.confidence # list of 16 floats
    print(f"Batch shape: {images.shape}")
    print(f"Labels: {labels[:3]}...")
    break

for batch in dataset.shuffled(batch_size=32):
    # Samples are shuffled at shard and sample level
    images = batch.image
    labels = batch.label
    # Train your model
    # model.train(images, labels)
    break

# Define a simplified view type
@atdata.packable
class SimplifiedSample:
    label: str
    confidence: float

# Create a lens transformation
@atdata.lens
def simplify(src: ImageSample) -> SimplifiedSample:
    return SimplifiedSample(label=src.label, confidence=src.confidence)

# View dataset through lens
simple_ds = dataset.as_type(SimplifiedSample)
for batch in simple_ds.ordered(batch_size=8):
    print(f"Labels: {batch.label}")
    print(f"Confidences: {batch.confidence}")
    break
'''


def test_quickstart_runs_as_written(tmp_path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(QUICKSTART)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith("Serialized size: 602,")
    assert out[1] == "Round-trip successful!"
    assert out[2] == "Wrote 100 samples to my-dataset-000000.tar"
    assert out[3] == "Batch shape: (16, 224, 224, 3)"
    assert out[4] == "Labels: ['class_0', 'class_1', 'class_2']..."
    assert out[5] == "Labels: " + str([f"class_{i}" for i in range(8)])
    assert out[6].startswith("Confidences: [0.") and len(out) == 7
    assert (tmp_path / "my-dataset-000000.tar").stat().st_size > 100 * 602_000
