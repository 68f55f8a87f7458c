"""The MERT path with a tiny, randomly initialised HubertModel of MERT's family (real weights cannot be
downloaded here). It has MERT's conv strides, so 75 frames per second at 24 kHz, like the real model."""

import json
import shutil

import numpy as np
import pytest

from lmprint.errors import ModelError  # noqa: E402
from neural import codes, mert, search  # noqa: E402
from tests.conftest import rendered, tiny_config  # noqa: E402,F401

needs_torch = pytest.mark.slow  # importing torch and transformers alone takes 15-20 s on 2 cores


def written_songs(folder, seeds, seconds: float = 14.0) -> list:
    """Generated songs of these seeds written as FLAC files in `folder`: their paths."""
    from bench.audio_io import write

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        paths.append(folder / f"s{seed}.flac")
        write(paths[-1], rendered(seed, seconds, 22050), 22050)
    return paths


@pytest.fixture(scope="session")
def encoder(tiny_model_dir):
    return mert.load(tiny_model_dir, device="cpu", threads=2)


def test_windows_are_5_s_with_a_1_s_hop_and_the_tail_dropped():
    song = np.arange(180 * 24000, dtype=np.float32)  # each sample its own index (exact in float32 up to 2**24)
    windows = mert.windows(song)
    assert windows.shape == (176, 120000)
    assert np.shares_memory(windows, song)  # views: an hour's windows copied at once would take 1.7 GB
    assert windows[:, 0].tolist() == (np.arange(176) * 24000).tolist()  # one a second, from the start
    assert windows[-1, -1] == 175 * 24000 + 119999  # the last whole window; the tail after it dropped
    short = mert.windows(np.zeros(3 * 24000, np.float32))
    assert short.shape == (1, 72000)  # a short clip is one window of its own length, not zero-padded


@needs_torch
def test_embeddings_have_the_model_width_unit_length_and_are_deterministic(encoder):
    signal = rendered(1, 8.0, 24000)
    first = encoder.embed(signal, batch_size=2)
    again = encoder.embed(signal, batch_size=4)
    assert first.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, again, atol=1e-5)  # batching does not change the answer


@needs_torch
def test_the_real_key_names_load_strictly_and_wrong_weights_are_refused(tiny_model_dir, tmp_path):
    torch = pytest.importorskip("torch")
    names = set(torch.load(tiny_model_dir / "pytorch_model.bin", weights_only=True))
    assert "feature_extractor.conv_layers.0.conv.weight" in names and "encoder.layers.0.attention.q_proj.weight" in names
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    state = torch.load(tiny_model_dir / "pytorch_model.bin", weights_only=True)
    state["unexpected.weight"] = torch.zeros(1)
    torch.save(state, bad / "pytorch_model.bin")
    with pytest.raises(ModelError, match="do not fit"):
        mert.load(bad, device="cpu")
    fewer = {**tiny_config(), "num_hidden_layers": 1}  # a config of other layers: torch lists every key it misses
    (bad / "config.json").write_text(json.dumps(fewer))
    with pytest.raises(ModelError, match="do not fit") as refused:
        mert.load(bad, device="cpu")
    assert len(str(refused.value)) < 320 and str(refused.value).endswith("…)"), str(refused.value)
    (bad / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    pickled = torch.nn.Module()  # a file torch loads only with code execution allowed: one line, not torch's advice
    torch.save(pickled, bad / "pytorch_model.bin")
    with pytest.raises(ModelError) as refused:
        mert.load(bad, device="cpu")
    assert str(refused.value) == f"cannot read the weights in {bad}: not a checkpoint that loads as plain tensors " \
                                 "(damaged, or not MERT's?)"
    (bad / "pytorch_model.bin").write_bytes(np.random.default_rng(0).bytes(5000))  # damaged
    with pytest.raises(ModelError, match="cannot read the weights") as refused:
        mert.load(bad, device="cpu")
    assert "\n" not in str(refused.value) and "weights_only" not in str(refused.value)


def test_a_missing_model_folder_is_reported_before_torch_is_imported(tmp_path):
    """`lmprint match --method mert --model WRONG` answers at once: importing torch alone takes seconds."""
    import subprocess
    import sys

    code = ("import sys\nfrom neural import mert\ntry:\n    mert.load(sys.argv[1])\nexcept Exception as error:\n"
            "    print(type(error).__name__, error)\nprint('torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nowhere")], capture_output=True, text=True)
    first, second = done.stdout.splitlines()
    assert first.startswith("ModelError no MERT weights at") and second == "False False"


def test_a_wrong_model_folder_is_one_line_and_leaves_no_index_behind(tmp_path):
    from bench.audio_io import write
    from tests.conftest import run_cli

    write(tmp_path / "s.flac", rendered(0, 6.0, 22050), 22050)
    db = tmp_path / "index.db"
    result = run_cli("add", "--method", "mert", "--model", tmp_path / "nowhere", tmp_path / "s.flac", tmp_path / "s.flac",
                     db=db)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no MERT weights" in result.stderr
    assert not db.exists()


@needs_torch
def test_a_bad_model_path_gives_one_clear_error(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(ModelError, match="no MERT weights"):
        mert.load(tmp_path / "nowhere", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError) as refused:
        mert.load(tmp_path / "empty", device="cpu")
    assert str(refused.value) == (f"{tmp_path / 'empty' / 'config.json'}: no such file or directory (a MERT checkpoint "
                                  "folder holds config.json)")
    with pytest.MonkeyPatch.context() as patch:  # where the name came from, when it was not typed
        patch.setenv("LMPRINT_MERT_MODEL", str(tmp_path / "nope"))
        with pytest.raises(ModelError, match=r"nope' \(\$LMPRINT_MERT_MODEL\)"):
            mert.load(None, device="cpu")
        patch.delenv("LMPRINT_MERT_MODEL")
        with pytest.raises(ModelError, match=r"\(the default, no --model given\)"):
            mert.load(None, device="cpu")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(tiny_config()))
    with pytest.raises(ModelError, match="no model.safetensors or pytorch_model.bin"):
        mert.load(tmp_path / "empty", device="cpu")


def test_a_config_transformers_refuses_or_that_is_no_object_and_a_device_mert_cannot_run_on_are_one_line(
        tiny_model_dir, tmp_path):
    """A config.json that is a list, or whose values transformers' own checks refuse (in kinds of error other than
    ValueError, in its recent versions), and `--device meta` (which loaded, then failed at the first window in
    autocast): each a one-line ModelError, where each was a traceback."""
    pytest.importorskip("torch")
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(tiny_model_dir / "pytorch_model.bin", bad / "pytorch_model.bin")
    for config in ([1, 2], None, {**tiny_config(), "conv_dim": [32] * 6}, {**tiny_config(), "hidden_size": "384"}):
        (bad / "config.json").write_text(json.dumps(config))
        with pytest.raises(ModelError, match=r"config.json: not a MERT configuration"):
            mert.load(bad, device="cpu")
    with pytest.raises(ModelError, match=r"cannot use device 'meta': MERT runs on cpu, cuda, mps, xpu"):
        mert.load(tiny_model_dir, device="meta")
    import torch

    xpu = getattr(torch, "xpu", None)  # Intel's GPUs are a kind MERT runs on: a build without them says so
    if xpu is None or not xpu.is_available():
        with pytest.raises(ModelError, match=r"cannot use device 'xpu': (?!MERT runs on)"):
            mert.load(tiny_model_dir, device="xpu")


def test_a_song_becomes_10_codes_of_32_bytes_one_per_passage():
    """176 windows around 10 passages (tight clusters): k-means finds the passages, and each code is its passage's
    centre's code, but for a few bits near the hyperplanes; ten windows or fewer are kept as they are."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((10, 768)).astype(np.float32)
    windows = centres[rng.integers(0, 10, 176)] + 0.01 * rng.standard_normal((176, 768)).astype(np.float32)
    projection = codes.Projection.fit(rng.standard_normal((2000, 768)))
    song = projection.codes(codes.kmeans(windows))
    assert song.shape == (10, 32) and song.dtype == np.uint8 and song.nbytes == 320
    expected = projection.codes(centres / np.linalg.norm(centres, axis=1, keepdims=True))  # centroids are unit
    nearest = [min(int(np.unpackbits(code ^ other).sum()) for other in expected) for code in song]
    assert max(nearest) <= 8 and len({int(np.argmin([np.unpackbits(code ^ other).sum() for other in expected]))
                                      for code in song}) == 10
    few = codes.kmeans(windows[:7])
    assert np.allclose(few, windows[:7] / np.linalg.norm(windows[:7], axis=1, keepdims=True))  # kept as they are


def test_a_basis_fit_on_fewer_vectors_than_bits_gives_them_codes_that_a_nudge_does_not_flip():
    """41 centroids span 40 directions once centred: the other 216 components held rounding noise for them, and
    their stored bits were coin flips (a nudge of 1e-7 flipped some 100 of 256). Those bits are now random
    hyperplanes' signs: as stable for the set's own vectors as for any other. A basis of more bits than the
    vectors have dimensions is refused."""
    rng = np.random.default_rng(4)
    reference = rng.standard_normal((41, 768))
    projection = codes.Projection.fit(reference)
    nudged = reference + 1e-7 * rng.standard_normal(reference.shape)
    flipped = np.unpackbits(projection.codes(reference) ^ projection.codes(nudged), axis=1).sum(axis=1)
    assert flipped.max() <= 2, flipped
    columns = projection.components
    assert np.allclose(np.linalg.norm(columns, axis=0), 1.0, atol=1e-5)
    assert np.linalg.matrix_rank(columns.astype(np.float64)) == 256
    with pytest.raises(ValueError, match="256 bits from vectors of 96 dimensions"):
        codes.Projection.fit(rng.standard_normal((500, 96)))


def test_kmeans_is_seeded_and_finds_separated_clusters():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((10, 768)) * 10
    points = np.repeat(centres, 20, axis=0) + rng.standard_normal((200, 768))
    found = codes.kmeans(points, seed=3)
    np.testing.assert_array_equal(found, codes.kmeans(points, seed=3))
    unclustered = rng.standard_normal((200, 768))  # no clusters: where it starts shows in what it ends with
    assert not np.array_equal(codes.kmeans(unclustered, seed=3), codes.kmeans(unclustered, seed=4))
    # Lloyd's fixed point: each centroid is its cluster's mean, not the seeding's point in it (0.995 away)
    means = points.reshape(10, 20, 768).mean(axis=1)
    similarity = found @ (means / np.linalg.norm(means, axis=1, keepdims=True)).T
    assert np.all(similarity.max(axis=0) > 0.99999)  # every cluster found, at its mean


def test_pca_survives_the_database_and_keeps_codes_identical(tmp_path):
    from lmprint.catalogue import Catalogue
    from neural.settings import MertSettings
    from neural.store import CodeStore

    rng = np.random.default_rng(2)
    fitted = codes.Projection.fit(rng.standard_normal((500, 768)))
    with Catalogue(tmp_path / "i.db", create=True) as catalogue:
        store = CodeStore(catalogue, MertSettings(), create=True)
        store.save_projection(fitted, "tiny", 500)
        store.save_projection(codes.Projection.fit(rng.standard_normal((500, 768))), "other", 500)  # frozen
    with Catalogue(tmp_path / "i.db") as catalogue:
        loaded = CodeStore(catalogue, MertSettings()).projection()
    vectors = rng.standard_normal((20, 768))
    np.testing.assert_array_equal(loaded.codes(vectors), fitted.codes(vectors))


def test_hamming_ranking_on_constructed_codes():
    rng = np.random.default_rng(3)
    library = rng.integers(0, 256, (50, 32), dtype=np.uint8)  # 5 songs × 10 codes
    code_song = np.repeat(np.arange(5), 10)
    query = library[[23]].copy()
    query[0, :3] ^= 0xFF  # 24 bits away from song 2's fourth code
    rows, distances = search.rank(query, search.as_columns(library), code_song, 5)
    assert rows[0] == 2 and distances[0] == 24
    brute = [min(int(np.unpackbits(query[0] ^ library[c]).sum()) for c in range(s * 10, s * 10 + 10)) for s in range(5)]
    assert dict(zip(rows.tolist(), distances.tolist())) == dict(enumerate(brute))


def test_a_windows_distance_is_its_nearest_code_whichever_block_holds_it():
    """The kernel reads the codes in blocks (4,096 by default); at a block of 7 every song's codes straddle one."""
    rng = np.random.default_rng(5)
    library = rng.integers(0, 256, (60, 32), dtype=np.uint8)  # 6 songs × 10 codes
    code_song = np.repeat(np.arange(6), 10)
    windows = rng.integers(0, 256, (3, 32), dtype=np.uint8)
    brute = [[min(int(np.unpackbits(window ^ library[c]).sum()) for c in range(s * 10, s * 10 + 10))
              for s in range(6)] for window in windows]
    found = search.song_distances_kernel(search.as_words(windows), search.as_columns(library), code_song, 6, 7)
    np.testing.assert_array_equal(found, brute)


@pytest.mark.parametrize(("rule", "rows", "distances"), [("mean", [1, 0], [40.0, 160 / 3]),
                                                         ("min", [0, 1], [0.0, 40.0]),
                                                         ("single", [1, 0], [40.0, 80.0])])
def test_a_query_of_several_windows_ranks_by_its_rule(rule, rows, distances):
    """Song 0 is the first window exactly and 80 bits from the other two; song 1 is 40 bits from each. `mean`
    averages a song's distances over the windows, `min` takes its nearest window's, `single` the middle one's."""
    library = np.zeros((2, 32), np.uint8)
    library[1, :5] = 0xFF
    query = np.zeros((3, 32), np.uint8)
    query[1:, :10] = 0xFF
    found_rows, found_distances = search.rank(query, search.as_columns(library), np.arange(2), 2, rule)
    assert found_rows.tolist() == rows
    np.testing.assert_allclose(found_distances, distances, rtol=1e-6)


def retrained_model(tiny_model_dir, folder):
    """The tiny model's architecture with other weights, whose codes are no more comparable with the tiny model's."""
    torch, transformers = pytest.importorskip("torch"), pytest.importorskip("transformers")
    retrained = folder / "retrained-mert"
    retrained.mkdir()
    (retrained / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    torch.manual_seed(1)
    torch.save(transformers.HubertModel(mert.hubert_config(tiny_config())).state_dict(),
               retrained / "pytorch_model.bin")
    return retrained


@needs_torch
def test_add_and_match_through_the_cli(tiny_model_dir, tmp_path):
    from tests.conftest import run_cli

    written_songs(tmp_path, range(4))
    db = tmp_path / "index.db"
    added = run_cli("add", "--method", "mert", "--model", tiny_model_dir, "--device", "cpu",
                    *[tmp_path / f"s{seed}.flac" for seed in range(4)], db=db)
    assert added.returncode == 0, added.stderr
    assert "added 4" in added.stderr
    assert ("lmprint: note: PCA fit on 40 centroids (fewer than 256), and fixed for this index from now on; for a "
            "well-conditioned basis, index again into a new file with at least 26 songs in its first batch\n"
            ) in added.stderr, added.stderr  # what a small first batch leaves, and how to do better
    stats = json.loads(run_cli("stats", "--json", db=db, check=True).stdout)
    assert stats["songs"] == 4 and stats["code_bytes_per_song"] == 320.0
    # each file as a query: its windows are its song's (ten windows or fewer are kept as they are), and even the
    # random model tells four different songs apart
    queries = [tmp_path / f"s{seed}.flac" for seed in (2, 0)]
    result = run_cli("match", "--json", "--method", "mert", "--model", tiny_model_dir, *queries, db=db)
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["query"] for a in answers] == [str(q) for q in queries]
    assert [a["match"]["path"] for a in answers] == [str(q) for q in queries]
    assert all(a["match"]["offset_s"] is None and a["match"]["confidence"] > 0 for a in answers)
    missing = run_cli("match", "--method", "mert", "--model", tmp_path / "nowhere", tmp_path / "s2.flac", db=db)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.count("\n") == 1 and "no MERT weights" in missing.stderr  # once, not once per file
    # another model's codes cannot be compared with the index's, and a device that is not there: one line each
    other = tmp_path / "wider-mert"
    other.mkdir()
    torch, transformers = pytest.importorskip("torch"), pytest.importorskip("transformers")
    wider = {**tiny_config(), "hidden_size": 256}
    (other / "config.json").write_text(json.dumps(wider))
    torch.save(transformers.HubertModel(mert.hubert_config(wider)).state_dict(), other / "pytorch_model.bin")
    retrained = retrained_model(tiny_model_dir, tmp_path)
    moved = tmp_path / "moved-mert"  # the model it was built with, in another folder, saved under the names an
    moved.mkdir()  # older torch gave weight norm's tensors: the same weights
    shutil.copy(tiny_model_dir / "config.json", moved)
    state = torch.load(tiny_model_dir / "pytorch_model.bin", weights_only=True)
    older = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    torch.save({next((name.replace(new, old) for new, old in older.items() if new in name), name): tensor
                for name, tensor in state.items()}, moved / "pytorch_model.bin")
    assert "encoder.pos_conv_embed.conv.weight_g" in torch.load(moved / "pytorch_model.bin", weights_only=True)
    assert run_cli("match", "--method", "mert", "--model", moved, "--device", "cpu", tmp_path / "s2.flac",
                   db=db).returncode == 0
    for model, device, reason in ((other, "cpu", "dimensions"), (retrained, "cpu", "other weights"),
                                  (tiny_model_dir, "gpu", "cannot use device")):
        refused = run_cli("match", "--method", "mert", "--model", model, "--device", device, tmp_path / "s2.flac",
                          tmp_path / "s0.flac", db=db)  # once for the batch, not once a file
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and reason in refused.stderr, refused.stderr
    # `add` of files all indexed already, with other weights: refused too, not "added 0" as though all were well
    again = run_cli("add", "--method", "mert", "--model", retrained, "--device", "cpu", tmp_path / "s2.flac", db=db)
    assert again.returncode == 1 and "other weights" in again.stderr and again.stderr.count("\n") == 1, again.stderr
    removed = run_cli("remove", tmp_path / "s1.flac", db=db, check=True)  # an index of MERT codes alone
    assert "s1.flac" in removed.stdout
    assert json.loads(run_cli("stats", "--json", db=db, check=True).stdout)["songs"] == 3


@needs_torch
def test_a_first_batch_interrupted_is_kept_once_it_can_fit_the_basis_and_refused_in_one_line_before(encoder, tmp_path):
    """The first batch's codes wait for the PCA fit. Ctrl-C once enough centroids are in (64 bits: 7 songs of 10)
    fits the basis on them and keeps them, as if they were the whole batch; before that, one line says none was
    kept (the CLI would otherwise say that songs already added are kept)."""
    from neural.library import MertIndex
    from neural.settings import MertSettings

    paths = written_songs(tmp_path, range(9))
    settings = MertSettings(code_bits=64)

    def interrupt_after(count):
        seen = []

        def on_outcome(outcome):
            seen.append(outcome)
            if len(seen) == count:
                raise KeyboardInterrupt
        return on_outcome

    with MertIndex(tmp_path / "early.db", create=True, settings=settings, encoder=encoder) as index:
        with pytest.raises(KeyboardInterrupt, match="first 2 songs waited for the PCA fit.*none kept"):
            index.add(paths, on_outcome=interrupt_after(2))
        assert index.codes.projection() is None and index.stats()["songs"] == 0
    # centroids are counted, not windows: 5 songs of 20 s hold 80 windows but 50 centroids, under 64
    longer = written_songs(tmp_path / "longer", range(6), 20.0)
    with MertIndex(tmp_path / "longer.db", create=True, settings=settings, encoder=encoder) as index:
        with pytest.raises(KeyboardInterrupt, match="first 5 songs waited for the PCA fit.*none kept"):
            index.add(longer, on_outcome=interrupt_after(5))
        assert index.codes.projection() is None and index.stats()["songs"] == 0
    with MertIndex(tmp_path / "late.db", create=True, settings=settings, encoder=encoder) as index:
        with pytest.raises(KeyboardInterrupt):
            index.add(paths, on_outcome=interrupt_after(7))
        assert index.codes.projection() is not None and index.stats()["songs"] == 7
        index.add(paths)  # the rest, on the frozen basis
        assert index.stats()["songs"] == 9
        found = index.match(str(paths[8]))
        assert found is not None and found.song.path == str(paths[8])


@needs_torch
def test_a_moved_file_is_followed_a_copy_recorded_and_a_replaced_one_s_entry_removed(encoder, tmp_path):
    """The MERT engine's `add` settles a library's mess as the landmark engine's does (`lmprint.moves`): it
    skipped a moved file and kept naming the path that was gone, and a file whose content was replaced where it
    lay left two songs naming one path."""
    import os

    from bench.audio_io import write
    from neural.library import MertIndex

    music = tmp_path / "music"
    written_songs(music / "old", range(2))
    write(music / "s2.flac", rendered(2, 14.0, 22050), 22050)
    shutil.copy(music / "s2.flac", music / "s2_copy.flac")  # in the first batch, which waits for the basis
    with MertIndex(tmp_path / "index.db", create=True, encoder=encoder) as index:
        first = index.add(music)
        assert (first.added, first.copies, first.skipped) == (3, 1, 0)
        os.remove(music / "s2_copy.flac")
        os.rename(music / "old", music / "new")  # the folder renamed
        shutil.copy(music / "new" / "s1.flac", music / "s1 copy.flac")
        write(music / "s2.flac", rendered(7, 14.0, 22050), 22050)  # other music where s2 was
        outcomes = []
        report = index.add(music, on_outcome=outcomes.append)
        assert (report.added, report.moved, report.copies, report.replaced) == (1, 2, 1, 1)
        assert sorted((o.moved_from, o.path) for o in outcomes if o.moved_from) == [
            (str(music / "old" / f"s{seed}.flac"), str(music / "new" / f"s{seed}.flac")) for seed in range(2)]
        assert [(o.copy_of, o.path) for o in outcomes if o.copy_of] == [
            (str(music / "new" / "s1.flac"), str(music / "s1 copy.flac"))]
        assert [o.path for o in outcomes if o.replaced] == [str(music / "s2.flac")]
        assert sorted(song.path for song in index.catalogue.songs()) == [
            str(music / "new" / "s0.flac"), str(music / "new" / "s1.flac"), str(music / "s2.flac")]
        assert index.catalogue.copies_of() == {index.catalogue.songs_at(str(music / "new" / "s1.flac"))[0].id: [
            str(music / "s1 copy.flac")]}
        found = index.match(str(music / "new" / "s0.flac"))
        assert found is not None and found.song.path == str(music / "new" / "s0.flac")


@needs_torch
def test_in_a_file_both_engines_hold_a_replaced_file_s_entry_is_left_to_the_landmark_engine(encoder, tmp_path):
    """Only the landmark engine drops postings: the MERT engine's `add` keeps a stale entry that holds some (its
    rows alone deleted, they would stay in the posting store with no song), and the landmark `add` removes it."""
    from bench.audio_io import write
    from landmark import Index
    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(2))
    db = tmp_path / "both.db"
    with Index(db, create=True) as index:
        index.add(paths)
    with MertIndex(db, create=True, encoder=encoder) as index:  # beside the postings
        with pytest.raises(ValueError, match="jobs must be a whole number of worker processes, 1 or more, not 0"):
            index.add(paths, jobs=0)  # before anything is coded
        assert index.add(paths).added == 2
        write(paths[1], rendered(7, 14.0, 22050), 22050)  # other music where s1 was
        report = index.add(paths)
        assert (report.added, report.replaced) == (1, 0) and len(index.catalogue.songs_at(str(paths[1]))) == 2
        assert report.notes == [f"{paths[1]} holds other audio than when the landmark engine indexed it: that "
                                "engine still names the old audio there until `lmprint add` (the landmark engine) "
                                "indexes the file again"]
    with Index(db) as index:
        assert index.add(paths).replaced == 1 and len(index.catalogue.songs_at(str(paths[1]))) == 1
        kept = index.stats()
    with Index(tmp_path / "fresh.db", create=True) as index:  # the same files, indexed anew
        index.add(paths)
        assert (kept["songs"], kept["hashes"]) == (2, index.stats()["hashes"])


@needs_torch
def test_a_file_moved_since_the_other_engine_indexed_it_is_followed_by_each_engine_s_add(encoder, tmp_path):
    """A song one engine indexed, then moved, then added by the other engine: the other engine's data joined the
    entry, which kept naming the path that was gone (and `prune` would have removed the song with both engines'
    data)."""
    import os

    from landmark import Index
    from neural.library import MertIndex

    for first, second in (("landmark", "mert"), ("mert", "landmark")):
        music = tmp_path / first / "music"
        written_songs(music / "old", range(2))
        db = tmp_path / first / "index.db"
        def opened(engine, db=db):
            return Index(db, create=True) if engine == "landmark" else MertIndex(db, create=True, encoder=encoder)
        with opened(first) as index:
            assert index.add(music).added == 2
        os.rename(music / "old", music / "new")
        with opened(second) as index:
            assert index.add(music).added == 2
            assert sorted(song.path for song in index.catalogue.songs()) == [
                str(music / "new" / f"s{seed}.flac") for seed in range(2)], first


@needs_torch
def test_samples_at_another_rate_are_resampled_to_the_models(encoder, tmp_path):
    """As the landmark engine does: a clip at 44.1 kHz given its rate is matched as the same clip at 24 kHz; and
    samples are taken as a decoder gives them (a list; NaN, which a damaged frame decodes to, as silence)."""
    import soxr

    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(2))
    clip = rendered(1, 14.0, 44_100)[2 * 44_100:9 * 44_100]
    with MertIndex(tmp_path / "index.db", create=True, encoder=encoder) as index:
        index.add(paths)
        at_models = index.match_samples(soxr.resample(clip, 44_100, mert.SAMPLE_RATE_HZ, quality="HQ"))
        assert at_models is not None and index.match_samples(clip, sample_rate_hz=44_100) == at_models
        at_24k = rendered(1, 14.0, mert.SAMPLE_RATE_HZ)[2 * mert.SAMPLE_RATE_HZ:9 * mert.SAMPLE_RATE_HZ]
        assert index.match_samples(at_24k.tolist()) == index.match_samples(at_24k) is not None
        damaged, silenced = at_24k.copy(), at_24k.copy()
        damaged[1000:1010], silenced[1000:1010] = np.nan, 0.0
        assert index.match_samples(damaged) == index.match_samples(silenced)


@needs_torch
def test_a_small_first_batch_s_note_is_the_report_s_not_printed_by_the_engine(encoder, tmp_path, capsys):
    """The engine leaves the note on the basis to its caller (the CLI prints it, the bench keeps it with the build's
    notes); it printed it to stderr itself, where a server's or a bench's user never saw it."""
    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(2))
    with MertIndex(tmp_path / "index.db", create=True, encoder=encoder) as index:
        report = index.add(paths)
        assert report.added == 2 and index.add(paths).notes == []  # the basis is fixed: said once
    assert report.notes == ["PCA fit on 20 centroids (fewer than 256), and fixed for this index from now on; for a "
                            "well-conditioned basis, index again into a new file with at least 26 songs in its first "
                            "batch"]
    assert capsys.readouterr().err == ""


@needs_torch
def test_a_first_batch_that_loses_the_race_for_the_basis_is_coded_with_the_winner_s_and_says_nothing_of_a_fit(
        encoder, tmp_path):
    """Two processes' first batches each fit a basis; the first stored is the index's. The other batch's note
    described a fit that was thrown away."""
    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(4))
    db = tmp_path / "index.db"
    with MertIndex(db, create=True, encoder=encoder) as late, MertIndex(db, create=True, encoder=encoder) as first:
        won = []

        def meanwhile(outcome):  # `late` has begun its first batch: `first` fits and stores a basis now
            if not won:
                won.append(first.add(paths[2:]))
        report = late.add(paths[:2], on_outcome=meanwhile)
        assert [len(r.notes) for r in won] == [1] and report.added == 2 and report.notes == []
        stored = late.codes.projection()
        assert stored is not None and late.stats()["songs"] == 4
        found = late.match(str(paths[0]))
        assert found is not None and found.song.path == str(paths[0])


@needs_torch
def test_a_server_whose_model_does_not_fit_its_index_answers_500(encoder, tiny_model_dir, tmp_path):
    """A model that is not the one the index was built with is the server's fault, not the request's: 500 with
    the line `match` prints (it answered 422, which tells a client to change its request)."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from lmprint.serve import create_app
    from neural.library import MertIndex

    written_songs(tmp_path, range(4))
    db = tmp_path / "index.db"
    with MertIndex(db, create=True, encoder=encoder) as index:
        index.add([tmp_path / f"s{seed}.flac" for seed in range(4)])
    other = mert.load(retrained_model(tiny_model_dir, tmp_path), device="cpu", threads=2)
    for model, status in ((encoder, 200), (other, 500)):
        with TestClient(create_app(lambda model=model: MertIndex(db, encoder=model))) as client:
            answer = client.post("/match", content=(tmp_path / "s2.flac").read_bytes())
        assert answer.status_code == status, answer.text
    assert "other weights" in answer.json()["error"]


@needs_torch
def test_a_later_batchs_outcomes_name_the_songs_their_content_is_indexed_as(encoder, tmp_path):
    """As the landmark engine's: a new song and a copy of one indexed already carry its id; the impatient index
    still takes the timeout it was given."""
    import shutil
    from pathlib import Path

    from neural.library import MertIndex

    written_songs(tmp_path, range(3))
    with MertIndex(tmp_path / "index.db", create=True, encoder=encoder, busy_timeout_s=5.0) as index:
        assert index.catalogue.busy_timeout_s == 5.0
        index.add([tmp_path / "s0.flac", tmp_path / "s1.flac"])
        shutil.copy(tmp_path / "s0.flac", tmp_path / "s0 copy.flac")
        outcomes = []
        index.add([tmp_path / "s2.flac", tmp_path / "s0 copy.flac"], on_outcome=outcomes.append)
        ids = {Path(song.path).name: song.id for song in index.catalogue.songs()}
    assert {Path(o.path).name: (o.counted_as, o.song_id) for o in outcomes} == {
        "s2.flac": ("added", ids["s2.flac"]), "s0 copy.flac": ("copies", ids["s0.flac"])}


@needs_torch
def test_a_servers_first_upload_to_a_mert_index_answers_the_song_it_is_stored_as(encoder, tmp_path):
    """The first upload is stored once its basis is fitted, after its outcome is said: its id is read then."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from bench.audio_io import write
    from lmprint.catalogue import Catalogue
    from lmprint.serve import ServeSettings, create_app
    from neural.library import MertIndex

    song = tmp_path / "first.flac"
    write(song, rendered(5, 14.0, 22050), 22050)
    db = tmp_path / "index.db"
    MertIndex(db, create=True, encoder=encoder).close()
    settings = ServeSettings(allow_add=True, token="t")
    with TestClient(create_app(lambda: MertIndex(db, encoder=encoder), settings)) as client:
        added = client.post("/songs", files={"file": ("first.flac", song.read_bytes())},
                            headers={"authorization": "Bearer t"})
    assert added.status_code == 200 and added.json()["added"] == 1, added.text
    with Catalogue(db) as catalogue:
        assert [s.id for s in catalogue.songs()] == [added.json()["song_id"]]


@needs_torch
def test_an_index_sees_songs_another_connection_added_or_removed_and_refuses_a_model_narrower_than_its_codes(
        encoder, tmp_path):
    """The basis and codes a search reads were kept until this index's own next add: a server thread, or another
    process, adding or removing songs went unseen (a song added was never found, a song removed still the
    nearest, answered as no match). And a model whose embeddings have fewer dimensions than the codes' bits made
    shorter codes that `match` then failed on with a traceback: it is refused at the first add."""
    from bench.audio_io import write
    from neural.library import MertIndex

    music = tmp_path / "music"
    written_songs(music, range(4))
    noise = 0.003 * np.random.default_rng(0).standard_normal(14 * 22050).astype(np.float32)
    write(music / "s3 live.flac", rendered(3, 14.0, 22050) + noise, 22050)  # the nearest song once s3 is gone
    path = tmp_path / "index.db"
    with MertIndex(path, create=True, encoder=encoder) as reader, MertIndex(path, encoder=encoder) as writer:
        writer.add([str(music / f"s{seed}.flac") for seed in range(3)])
        found = reader.match(str(music / "s1.flac"))
        assert found is not None and found.song.path == str(music / "s1.flac")  # read, and kept
        writer.add([str(music / "s3.flac"), str(music / "s3 live.flac")])
        found = reader.match(str(music / "s3.flac"))
        assert found is not None and found.song.path == str(music / "s3.flac")
        writer.remove([song.id for song in writer.catalogue.songs_at(str(music / "s3.flac"))])
        found = reader.match(str(music / "s3.flac"))
        assert found is not None and found.song.path == str(music / "s3 live.flac")

    import transformers

    network = transformers.HubertModel(mert.hubert_config({**tiny_config(), "hidden_size": 96})).eval()
    narrow = mert.MertEncoder(network, "cpu", "fp32", "narrow")
    with MertIndex(tmp_path / "narrow.db", create=True, encoder=narrow) as index:
        with pytest.raises(ModelError, match="a model of 96 dimensions cannot give 256-bit codes"):
            index.add([str(music / "s0.flac")])


@needs_torch
def test_a_failed_first_batch_is_not_said_to_be_kept(tmp_path):
    """A MERT index's first batch is said as each file is embedded, and stored once its PCA fit is: where the fit
    is refused (here a model narrower than the codes), `add` named the files said as songs kept, and kept none."""
    import torch
    import transformers

    from bench.audio_io import write
    from tests.conftest import run_cli

    narrow = tmp_path / "narrow"
    narrow.mkdir()
    values = {**tiny_config(), "hidden_size": 96}
    (narrow / "config.json").write_text(json.dumps(values))
    torch.save(transformers.HubertModel(mert.hubert_config(values)).state_dict(), narrow / "pytorch_model.bin")
    for seed in range(2):
        write(tmp_path / f"s{seed}.flac", rendered(seed, 20.0, 24000), 24000)
    db = tmp_path / "i.db"
    result = run_cli("add", "-q", "--method", "mert", "--model", narrow, tmp_path / "s0.flac", tmp_path / "s1.flac",
                     db=db)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith("cannot give 256-bit codes (its embeddings span fewer)"), \
        result.stderr
    assert "kept" not in result.stderr and run_cli("list", db=db).stdout == ""


@needs_torch
def test_a_match_s_confidence_is_its_margin_over_the_bits_and_a_clip_far_from_every_song_is_none(encoder, tmp_path):
    """Song 5 is not indexed: its nearest song is 74 bits off of 256 (the bound is 64) and leads the next by 10, so
    the distance alone refuses it. A clip of an indexed song is named, its confidence the margin as a share of
    the bits."""
    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(4))
    with MertIndex(tmp_path / "i.db", create=True, encoder=encoder) as index:
        index.add(paths)
        answer = index.answer(str(paths[2]))
        best, runner_up = answer.contenders[0].score, answer.contenders[1].score
        assert answer.match is not None and 0 < answer.match.confidence <= 1
        assert answer.match.confidence == pytest.approx((runner_up - best) / 256)
        unknown = index._answer(rendered(5, 14.0, mert.SAMPLE_RATE_HZ)[:5 * mert.SAMPLE_RATE_HZ])
        assert unknown.contenders[0].score > 64 and unknown.contenders[1].score - unknown.contenders[0].score >= 4
        assert unknown.match is None


def test_codes_made_with_other_settings_are_refused(tmp_path):
    """Windows, hop, centroids and bits make the codes: an index read with others would compare unlike codes. How
    a query is judged is not recorded: any rule reads them."""
    from lmprint.catalogue import Catalogue
    from lmprint.errors import IndexFileError
    from neural.settings import MertSettings
    from neural.store import CodeStore

    with Catalogue(tmp_path / "i.db", create=True) as catalogue:
        CodeStore(catalogue, MertSettings(), create=True)
    for other in (MertSettings(hop_s=2.0), MertSettings(window_s=3.0), MertSettings(centroids=8),
                  MertSettings(code_bits=128)):
        with Catalogue(tmp_path / "i.db") as catalogue, pytest.raises(IndexFileError, match="other settings"):
            CodeStore(catalogue, other)
    with Catalogue(tmp_path / "i.db") as catalogue:
        CodeStore(catalogue, MertSettings(rule="min", min_margin_bits=8.0))


def test_a_mert_song_is_removed_only_as_it_was_read(tmp_path):
    """A `Song` given to `remove` whose row another process changed meanwhile (moved) is not removed, nor an id
    the index does not hold."""
    from neural.library import MertIndex

    with MertIndex(tmp_path / "i.db", create=True) as index:
        for number in range(2):
            index.codes.add(f"/music/s{number}.flac", f"s{number}", 14.0, f"{number:040x}",
                            np.zeros((10, 32), np.uint8), 10)
        first, second = index.catalogue.songs()
        with index.catalogue.write():  # another process moves s0 meanwhile
            index.catalogue.conn.execute("UPDATE songs SET path='/music/moved.flac' WHERE id=?", (first.id,))
        assert index.remove([first, 999]) == []
        assert index.remove([second]) == [second.id]
        assert [song.path for song in index.catalogue.songs()] == ["/music/moved.flac"]


def test_the_model_digest_is_frozen_with_the_first_stored_basis(tmp_path):
    """A second basis offered (a race's loser) records neither its basis nor its weights' digest."""
    from lmprint.catalogue import Catalogue
    from neural.settings import MertSettings
    from neural.store import CodeStore

    rng = np.random.default_rng(2)
    with Catalogue(tmp_path / "i.db", create=True) as catalogue:
        store = CodeStore(catalogue, MertSettings(), create=True)
        assert store.save_projection(codes.Projection.fit(rng.standard_normal((500, 768))), "tiny", 500, "aaaa")
        assert not store.save_projection(codes.Projection.fit(rng.standard_normal((500, 768))), "other", 500,
                                         "bbbb")
    with Catalogue(tmp_path / "i.db") as catalogue:
        assert CodeStore(catalogue, MertSettings()).model_digest() == "aaaa"


def test_songs_at_the_same_distance_rank_in_the_order_they_were_stored():
    """A tie between songs goes to the lower row (the song stored first), whichever way the search is cut."""
    library = np.zeros((3, 32), np.uint8)  # songs 0, 1 and 2, each one code; 0 and 2 identical
    library[1, :2] = 0xFF
    rows, distances = search.rank(np.zeros((1, 32), np.uint8), search.as_columns(library), np.arange(3), 3)
    assert rows.tolist() == [0, 2, 1] and distances.tolist() == [0.0, 0.0, 16.0]
    # more songs than asked for: the search is cut by a partition, and ties still go by row, across the cut too
    library = np.zeros((12, 32), np.uint8)
    for row, set_bytes in enumerate([2, 1, 1, 0, 0, 0, 0, 0, 0, 2, 1, 2]):
        library[row, :set_bytes] = 0xFF
    rows, distances = search.rank(np.zeros((1, 32), np.uint8), search.as_columns(library), np.arange(12), 12, top=5)
    assert rows.tolist() == [3, 4, 5, 6, 7] and distances.tolist() == [0.0] * 5
    rows, _ = search.rank(np.zeros((1, 32), np.uint8), search.as_columns(library), np.arange(12), 12, top=8)
    assert rows.tolist() == [3, 4, 5, 6, 7, 8, 1, 2]


def test_top_k_of_many_songs_are_the_nearest_in_order():
    """With more songs than `top`, the `top` nearest are returned, nearest first, with their true distances."""
    rng = np.random.default_rng(7)
    library = rng.integers(0, 256, (200, 32), dtype=np.uint8)  # 40 songs × 5 codes
    code_song = np.repeat(np.arange(40), 5)
    query = library[[57]].copy()  # song 11's third code
    query[0, :2] ^= 0xFF
    brute = np.array([min(int(np.unpackbits(query[0] ^ library[c]).sum()) for c in range(s * 5, s * 5 + 5))
                      for s in range(40)])
    rows, distances = search.rank(query, search.as_columns(library), code_song, 40, top=5)
    expected = np.argsort(brute, kind="stable")[:5]
    assert rows.tolist() == expected.tolist() and rows[0] == 11
    assert distances.tolist() == brute[expected].astype(float).tolist()


def test_a_file_given_as_the_model_folder_is_no_mert_weights(tmp_path):
    """A model path that is a file, not a folder, is refused as holding no MERT weights."""
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match=r"no MERT weights at .*pytorch_model\.bin"):
        mert.resolve_model_dir(weights)


@needs_torch
def test_a_cqt_checkpoint_s_config_is_refused_as_not_hubert():
    """MERT's CQT-feature checkpoints are of another family: their config is refused by name."""
    pytest.importorskip("transformers")
    with pytest.raises(ModelError, match="CQT feature extractor"):
        mert.hubert_config({**tiny_config(), "feature_extractor_cqt": True})


@needs_torch
def test_a_race_loser_s_songs_are_stored_as_the_winning_basis_codes_them(encoder, tmp_path):
    """The batch that lost the race for the basis stores its songs' codes made with the stored basis."""
    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(4))
    db = tmp_path / "index.db"
    with MertIndex(db, create=True, encoder=encoder) as late, MertIndex(db, create=True, encoder=encoder) as first:
        won = []

        def meanwhile(outcome):
            if not won:
                won.append(first.add(paths[2:]))
        late.add(paths[:2], on_outcome=meanwhile)
        stored = late.codes.projection()
        for path in paths[:2]:
            song = late.catalogue.songs_at(str(path))[0]
            blob = late.catalogue.read("SELECT codes FROM mert_codes WHERE song_id=?", (song.id,))[0][0]
            embeddings, _ = late.embed_file(str(path))
            expected = stored.codes(codes.kmeans(embeddings, k=late.settings.centroids))
            assert np.frombuffer(blob, np.uint8).reshape(-1, 32).tolist() == expected.tolist()


@needs_torch
def test_a_mert_song_s_catalogue_duration_is_its_audio_length(encoder, tmp_path):
    """`list`'s duration of a MERT-added song is the file's length in seconds, and its code row counts its windows."""
    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(2), 14.0) + written_songs(tmp_path / "long", [5], 20.0)
    with MertIndex(tmp_path / "i.db", create=True, encoder=encoder) as index:
        index.add(paths)
        durations = {song.path: song.duration_s for song in index.catalogue.songs()}
        windows = dict(index.catalogue.read("SELECT s.path, c.n_windows FROM songs s JOIN mert_codes c "
                                            "ON c.song_id = s.id"))
    assert durations[str(paths[0])] == pytest.approx(14.0, abs=0.05)
    assert durations[str(paths[2])] == pytest.approx(20.0, abs=0.05)
    assert windows == {str(paths[0]): 10, str(paths[1]): 10, str(paths[2]): 16}


@needs_torch
def test_stats_name_the_basis_its_width_bits_and_the_centroids_it_was_fit_on(encoder, tmp_path):
    """`stats`' projection gives the model, its dimensions, the code bits and the first batch's centroid count."""
    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(3))
    with MertIndex(tmp_path / "i.db", create=True, encoder=encoder) as index:
        index.add(paths)
        stats = index.stats()
    assert stats["songs"] == 3 and stats["code_bytes"] == 960 and stats["code_bytes_per_song"] == 320.0
    assert stats["projection"] == {"model": encoder.name, "dims": 384, "bits": 256, "fitted_on_centroids": 30}


@needs_torch
def test_a_clip_shorter_than_a_window_is_matched_as_one_window(encoder, tmp_path):
    """A 3 s clip (under the 5 s window, over the 1 s minimum) is searched, not refused."""
    from neural.library import MertIndex

    paths = written_songs(tmp_path, range(3))
    clip = rendered(1, 14.0, mert.SAMPLE_RATE_HZ)[2 * mert.SAMPLE_RATE_HZ:5 * mert.SAMPLE_RATE_HZ]
    with MertIndex(tmp_path / "i.db", create=True, encoder=encoder) as index:
        index.add(paths)
        answer = index._answer(clip)
    assert len(answer.contenders) == 3
    assert answer.contenders[0].song.path == str(paths[1])


BITS = 256
"""Bits of a MERT code, as the tests below build them by hand."""


def anisotropic(rng, n=1500, dims=768, offset=20.0):
    """Data far from the origin (a large common offset) whose variance falls along axes 0, 1, 2, ..."""
    scales = np.ones(dims)
    scales[:4] = [40.0, 30.0, 20.0, 10.0]
    return offset * np.ones(dims) / np.sqrt(dims) * 10 + rng.standard_normal((n, dims)) * scales


def test_a_vector_at_the_basis_mean_has_no_bit_set():
    rng = np.random.default_rng(11)
    projection = codes.Projection.fit(rng.standard_normal((600, 768)))
    at_mean = projection.codes(projection.mean[None, :])
    np.testing.assert_array_equal(at_mean, np.zeros((1, BITS // 8), np.uint8))


def test_a_reflection_through_the_mean_flips_every_bit():
    rng = np.random.default_rng(12)
    reference = anisotropic(rng)
    projection = codes.Projection.fit(reference)
    vectors = reference[:20].astype(np.float32)
    mirrored = 2 * projection.mean - vectors
    differing = np.unpackbits(projection.codes(vectors) ^ projection.codes(mirrored), axis=1).sum(axis=1)
    assert differing.min() >= BITS - 4, differing


def test_components_are_the_centred_data_s_directions_by_decreasing_variance():
    rng = np.random.default_rng(13)
    projection = codes.Projection.fit(anisotropic(rng))
    for j in range(4):
        assert abs(float(projection.components[j, j])) > 0.9, (j, projection.components[:6, j])


def test_bit_j_of_a_code_is_the_sign_on_component_j_most_significant_bit_first():
    rng = np.random.default_rng(14)
    projection = codes.Projection.fit(rng.standard_normal((1000, 768)))
    signs = rng.choice([-1.0, 1.0], BITS)
    vector = projection.mean + 0.1 * (projection.components @ signs)
    bits = np.unpackbits(projection.codes(vector[None, :]), axis=1)[0]
    np.testing.assert_array_equal(bits, (signs > 0).astype(np.uint8))


def test_exactly_k_windows_are_kept_as_they_are_in_order():
    rng = np.random.default_rng(15)
    windows = rng.standard_normal((10, 768)).astype(np.float32)
    np.testing.assert_allclose(codes.kmeans(windows, k=10),
                               windows / np.linalg.norm(windows, axis=1, keepdims=True), rtol=1e-6, atol=1e-7)


class FakeEncoder:
    """Stands in for MERT: its embeddings are whatever the test sets; the basis is the first 256 axes."""
    name, dims, digest = "fake", 768, None

    def __init__(self):
        self.windows = None

    def embed(self, samples, batch_size, progress=None, window_s=None, hop_s=None):
        return self.windows


def embedding_of(bits):
    """A 768-d vector whose code under the axis basis has exactly `bits` (256 booleans)."""
    vector = np.full(768, -1.0, np.float32)
    vector[:BITS] = np.where(bits, 1.0, -1.0)
    return vector


def code_of(bits):
    return np.packbits(np.asarray(bits, bool))[None, :]


@pytest.fixture
def index_of(tmp_path):
    from neural.library import MertIndex

    opened = []

    def make(song_bits):
        encoder = FakeEncoder()
        index = MertIndex(tmp_path / "i.db", create=True, encoder=encoder)
        opened.append(index)
        index.codes.save_projection(codes.Projection(np.zeros(768, np.float32),
                                                     np.eye(768, BITS, dtype=np.float32)), "fake", BITS)
        for number, bits in enumerate(song_bits):
            index.codes.add(f"/music/s{number}.flac", f"s{number}", 14.0, f"{number:040x}", code_of(bits), 1)
        return index, encoder

    yield make
    for index in opened:
        index.close()


def noise():
    return np.random.default_rng(0).standard_normal(24000 * 6).astype(np.float32) * 0.1


def bits_set(count):
    bits = np.zeros(BITS, bool)
    bits[:count] = True
    return bits


def test_a_song_exactly_at_the_distance_bound_is_named(index_of):
    index, encoder = index_of([bits_set(0), ~bits_set(0)])
    encoder.windows = embedding_of(bits_set(64))[None, :]  # 64 from song 0 (the bound), 192 from song 1
    answer = index._answer(noise())
    assert [c.score for c in answer.contenders] == [64.0, 192.0]
    assert answer.match is not None and answer.match.song.title == "s0"


def test_a_lead_of_exactly_the_minimum_margin_is_named(index_of):
    index, encoder = index_of([bits_set(0), bits_set(14)])
    encoder.windows = embedding_of(bits_set(9))[None, :]  # 9 from song 0, 5 from song 1: a lead of 4
    answer = index._answer(noise())
    assert [c.score for c in answer.contenders] == [5.0, 9.0]
    assert answer.match is not None and answer.match.song.title == "s1"
    assert answer.match.confidence == pytest.approx(4 / BITS)



def test_the_only_song_of_an_index_is_named_with_its_margin_over_all_bits(index_of):
    index, encoder = index_of([bits_set(0)])
    encoder.windows = embedding_of(bits_set(8))[None, :]
    answer = index._answer(noise())
    assert answer.match is not None and answer.match.song.title == "s0"
    assert answer.match.confidence == pytest.approx((BITS - 8) / BITS)


def test_songs_with_identical_codes_rank_in_stored_order_through_the_store(index_of):
    index, encoder = index_of([bits_set(30), bits_set(30), bits_set(0)])
    encoder.windows = embedding_of(bits_set(30))[None, :]
    answer = index._answer(noise())
    assert [c.song.title for c in answer.contenders] == ["s0", "s1", "s2"]
    assert answer.match is None  # a tie: no margin
