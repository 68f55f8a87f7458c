"""From window embeddings to 320 bytes per song: k-means centroids, a frozen PCA, sign bits.

    windows (n × 768) → k-means, k = 10 → centroids (10 × 768, unit length)
                      → PCA to 256 dims (fit once, frozen) → sign bits → 10 codes × 32 bytes
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .settings import MertSettings

CENTROIDS = MertSettings.centroids
CODE_BITS = MertSettings.code_bits
SPANNED_VARIANCE = 1e-6
"""A component whose variance is under this share of the first's spans none of the reference set: the set has
fewer vectors than there are bits, and that variance is rounding."""


def kmeans(vectors: np.ndarray, k: int = CENTROIDS, seed: int = 0, iterations: int = 30) -> np.ndarray:
    """k-means++ seeded with `seed`, then Lloyd iterations; centroids L2-normalised. Deterministic."""
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape[0] <= k:
        return _normalise(vectors)
    rng = np.random.default_rng(seed)
    centroids = [vectors[rng.integers(vectors.shape[0])]]
    closest = np.sum((vectors - centroids[0]) ** 2, axis=1)
    for _ in range(1, k):
        probabilities = closest / closest.sum() if closest.sum() > 0 else None
        chosen = vectors[rng.choice(vectors.shape[0], p=probabilities)]
        centroids.append(chosen)
        closest = np.minimum(closest, np.sum((vectors - chosen) ** 2, axis=1))
    centres = np.array(centroids)
    for _ in range(iterations):
        distances = (vectors ** 2).sum(1)[:, None] - 2 * vectors @ centres.T + (centres ** 2).sum(1)[None, :]
        labels = np.argmin(distances, axis=1)
        updated = np.array([vectors[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)])
        if np.allclose(updated, centres, atol=1e-6):
            break
        centres = updated
    return _normalise(centres)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Projection:
    """A PCA basis: codes are sign((x − mean) @ components)."""

    mean: np.ndarray  # (dims,)
    components: np.ndarray  # (dims, bits), columns by decreasing variance

    @classmethod
    def fit(cls, vectors: np.ndarray, bits: int = CODE_BITS) -> Projection:
        """Covariance + eigh: the `bits` components of most variance. Where the reference set spans fewer (fewer
        vectors than bits), the rest are fixed random directions, sign bits of random hyperplanes as SimHash's: on
        a component the set has no variance on, its own vectors project to rounding noise (1e-9), so their stored
        bits were coin flips that no later query of the same music would repeat."""
        vectors = np.asarray(vectors, np.float64)
        if bits > vectors.shape[1]:
            raise ValueError(f"{bits} bits from vectors of {vectors.shape[1]} dimensions")
        mean = vectors.mean(axis=0)
        centred = vectors - mean
        covariance = centred.T @ centred / max(1, vectors.shape[0] - 1)
        values, vectors_ = np.linalg.eigh(covariance)
        order = np.argsort(values)[::-1][:bits]
        components = vectors_[:, order]
        # fix each component's sign (eigh's is arbitrary) so a refit on the same data gives the same codes
        components *= np.sign(components[np.argmax(np.abs(components), axis=0), np.arange(bits)])
        spanned = int((values[order] > SPANNED_VARIANCE * max(float(values[order[0]]), 0.0)).sum())
        if spanned < bits:
            directions = np.random.default_rng(0).standard_normal((vectors.shape[1], bits - spanned))
            components[:, spanned:] = directions / np.linalg.norm(directions, axis=0)
        return cls(mean.astype(np.float32), components.astype(np.float32))

    @property
    def bits(self) -> int:
        return int(self.components.shape[1])

    def codes(self, vectors: np.ndarray) -> np.ndarray:
        """Packed sign bits, (n, bits / 8) uint8."""
        projected = (np.asarray(vectors, np.float32) - self.mean) @ self.components
        return np.packbits(projected > 0, axis=1)

    def to_blobs(self) -> tuple[bytes, bytes]:
        return self.mean.astype("<f4").tobytes(), self.components.astype("<f4").tobytes()

    @classmethod
    def from_blobs(cls, mean: bytes, components: bytes, bits: int) -> Projection:
        mean_array = np.frombuffer(mean, "<f4").astype(np.float32)
        return cls(mean_array, np.frombuffer(components, "<f4").astype(np.float32).reshape(mean_array.size, bits))


