"""`vaekit serve`'s API through FastAPI's test client: each endpoint on a one-layer, a
hierarchical, an autoencoder and a non-image run; uploads checked by content and size; every
bad request a 4xx with a message; the shared model safe under concurrent requests."""

from __future__ import annotations

import base64
import io
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import TINY
from vaekit.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from vaekit.views.serve.app import create_app
from vaekit.views.serve.session import SCORE_K, ExplorerSession


def png_of(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((image * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def image_of(uri: str) -> np.ndarray:
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(0)
    np.save(root / "table.npy", rng.normal(size=(300, 6)).astype(np.float32))
    pd = pytest.importorskip("pandas")
    pd.DataFrame({"size": rng.normal(5, 2, 300), "kind": rng.choice(["a", "b", "c"], 300),
                  "count": rng.integers(0, 9, 300)}).to_csv(root / "mixed.csv", index=False)
    flags = {
        "vae": TINY,  # a 2-D latent: the latent map
        "wide": [*TINY, "--latent-dim", "6"],
        "hvae": ["--model", "hvae", "--hvae-latents", "4,2", "--hvae-widths", "32,16",
                 "--epochs", "1", "--batch-size", "50", "--quiet"],
        "ae": ["--model", "ae", *TINY],
        "table": ["--data", str(root / "table.npy"), "--likelihood", "gaussian", *TINY],
        "csv": ["--data", str(root / "mixed.csv"), *TINY],
        "cvae": [*TINY, "--condition", "label"],  # conditioned on the digits' labels
    }
    out = {}
    for name, extra in flags.items():
        out[name] = root / name
        assert main(["train", "--out", str(out[name]), *extra]) == 0
    out["hvae-top"] = root / "hvae-top"  # the hierarchy with a prior fitted to its top group
    assert main(["fit-prior", str(out["hvae"]), "--kind", "flow", "--epochs", "1", "--out",
                 str(out["hvae-top"]), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def sessions(runs: dict[str, Path]) -> dict[str, ExplorerSession]:
    return {name: ExplorerSession(run) for name, run in runs.items()}


def client(session: ExplorerSession, **options: Any) -> TestClient:
    return TestClient(create_app(session, **options), raise_server_exceptions=False)


@pytest.mark.parametrize("name", ["vae", "wide", "hvae", "hvae-top", "ae", "table", "csv",
                                  "cvae"])
def test_every_endpoint_answers_on_every_kind_of_run(name: str,
                                                     sessions: dict[str, ExplorerSession]) -> None:
    session = sessions[name]
    api = client(session)
    page = api.get("/")
    assert page.status_code == 200 and 'id="decoded"' in page.text
    info = api.get("/api/info").json()
    d = info["latent_dim"]
    assert d == session.model.latent_dim == sum(info["latent_groups"])
    assert sorted(s["dim"] for s in info["sliders"]) == list(range(d))
    weights = [s["weight"] for s in info["sliders"]]
    assert weights == sorted(weights, reverse=True)  # the most informative first
    z = [s["value"] for s in sorted(info["sliders"], key=lambda s: s["dim"])]
    c = {"condition": info["classes"][3]} if info["classes"] else {}  # a conditional model's
    first = api.post("/api/decode", json={"z": z, **c}).json()["x"]
    moved = api.post("/api/decode", json={"z": [v + 3.0 for v in z], **c}).json()["x"]
    assert first != moved
    if info["image"]:
        assert image_of(first).shape == session.model.event_shape[1:]
    elif name == "csv":
        assert list(first["row"]) == ["size", "kind", "count"]
        assert first["row"]["kind"] in ("a", "b", "c") and isinstance(first["row"]["count"], int)
    else:
        assert len(first) == session.model.data_dim
    encoded = api.post("/api/encode", json={"index": 2}).json()
    assert len(encoded["mean"]) == len(encoded["std"]) == d and math.isfinite(encoded["score"])
    frames = api.post("/api/interpolate", json={"a": 0, "b": 1, "steps": 5, **c}).json()
    assert len(frames["frames"]) == 5
    sample = api.post("/api/sample", json={"n": 3, "temperature": 0.7, "seed": 4, **c})
    if name == "ae":
        assert sample.status_code == 400 and "fit-prior" in sample.json()["detail"]
    else:
        assert len(sample.json()["samples"]) == 3
        again = api.post("/api/sample", json={"n": 3, "temperature": 0.7, "seed": 4,
                                              **c}).json()
        assert again == sample.json()  # reproducible from the seed
    latent_map = api.get("/api/latent_map")
    if d == 2:
        points = latent_map.json()["points"]
        assert len(points) == len(session.held_out) and len(points[0]) == 2
    else:
        assert latent_map.status_code == 400


def test_decode_is_the_models_decoder_and_encode_its_posterior_and_score(
        sessions: dict[str, ExplorerSession]) -> None:
    from vaekit.evaluate import log_likelihood

    session = sessions["wide"]
    api = client(session)
    x = session.held_out[5]
    encoded = api.post("/api/encode", json={"index": 5}).json()
    with torch.no_grad():
        mean = session.model.encode(x[None]).mean[0]
        expected = -float(log_likelihood(session.model, x[None], k=SCORE_K,
                                         compile=False).per_example[0])
        decoded = session.model.decode_mean(mean[None])[0, 0].numpy()
    assert np.allclose(encoded["mean"], mean.numpy(), atol=1e-5)
    assert encoded["score"] == pytest.approx(expected, abs=1e-3)
    shown = image_of(api.post("/api/decode", json={"z": mean.tolist()}).json()["x"])
    assert np.abs(shown / 255.0 - decoded).max() <= 0.5 / 255 + 1e-6
    # an upload of the same example (as a PNG) has the same posterior, up to 8-bit rounding
    uploaded = api.post("/api/encode", json={"upload": data_uri(png_of(x[0].numpy()))}).json()
    assert np.allclose(uploaded["mean"], encoded["mean"], atol=0.02)
    between = api.post("/api/interpolate", json={"a_upload": data_uri(png_of(x[0].numpy())),
                                                 "b": 5, "steps": 2}).json()["frames"]
    assert len(between) == 2


def test_a_table_row_is_uploaded_as_numbers(sessions: dict[str, ExplorerSession]) -> None:
    api = client(sessions["table"])
    row = ",".join(str(v) for v in sessions["table"].held_out[0].tolist())
    assert api.post("/api/encode", json={"upload": row}).status_code == 200
    bad = api.post("/api/encode", json={"upload": "1,2,x"})
    assert bad.status_code == 400 and "comma-separated" in bad.json()["detail"]
    short = api.post("/api/encode", json={"upload": "1,2"})
    assert short.status_code == 400 and "6 finite numbers" in short.json()["detail"]


def test_a_table_row_is_uploaded_as_csv(sessions: dict[str, ExplorerSession]) -> None:
    api = client(sessions["csv"])
    for upload in ("4.5,b,3", "size,kind,count\n4.5,b,3", "kind,size,count\nb,4.5,3"):
        answer = api.post("/api/encode", json={"upload": upload})
        assert answer.status_code == 200, answer.text
        assert answer.json()["input"]["row"] == {"size": pytest.approx(4.5, abs=1e-4),
                                                 "kind": "b", "count": 3}
    unseen = api.post("/api/encode", json={"upload": "4.5,z,3"})
    assert unseen.status_code == 400 and "'z', a value not seen in training" in unseen.text
    two = api.post("/api/encode", json={"upload": "1,a,1\n2,b,2"})
    assert two.status_code == 400 and "one row" in two.text


GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"


@pytest.mark.parametrize("path, body, status, message", [
    ("/api/decode", {"z": [0.0]}, 400, "latent has 6"),
    ("/api/decode", {"z": "zero"}, 422, "valid list"),
    ("/api/decode", {"z": [0.0] * 6, "extra": 1}, 422, "extra"),
    ("/api/encode", {"index": 10**6}, 400, "out of range"),
    ("/api/encode", {}, 400, "either index"),
    ("/api/encode", {"index": 0, "upload": "x"}, 400, "not both"),
    ("/api/encode", {"upload": "%%%"}, 400, "not valid base64"),
    ("/api/encode", {"upload": base64.b64encode(GIF).decode()}, 400, "not a PNG or JPEG"),
    ("/api/encode", {"upload": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()},
     400, "could not be decoded"),
    ("/api/sample", {"n": 0}, 422, "greater than or equal to 1"),
    ("/api/sample", {"n": 4, "temperature": -1}, 422, "temperature"),
    ("/api/interpolate", {"a": 0, "b": 1, "steps": 1000}, 422, "steps"),
    ("/api/interpolate", {"a": 0}, 400, "either b"),
])
def test_a_bad_request_gets_a_4xx_with_a_message(path: str, body: dict[str, Any], status: int,
                                                 message: str,
                                                 sessions: dict[str, ExplorerSession]) -> None:
    response = client(sessions["wide"]).post(path, json=body)
    assert response.status_code == status
    assert message in str(response.json()["detail"])
    assert "Traceback" not in response.text


def test_non_finite_numbers_and_broken_json_are_refused(
        sessions: dict[str, ExplorerSession]) -> None:
    api = client(sessions["wide"])
    nan = api.post("/api/decode", content=b'{"z": [NaN, 0, 0, 0, 0, 0]}',
                   headers={"content-type": "application/json"})
    assert nan.status_code == 422
    broken = api.post("/api/decode", content=b'{"z": [', headers={"content-type":
                                                                    "application/json"})
    assert broken.status_code == 422


def test_uploads_are_size_limited(sessions: dict[str, ExplorerSession]) -> None:
    api = client(sessions["wide"], max_body=10_000)
    big = base64.b64encode(png_of(np.random.default_rng(0).random((200, 200)))).decode()
    response = api.post("/api/encode", json={"upload": big})
    assert response.status_code == 413 and "limit of 10000 bytes" in response.json()["detail"]
    # a body sent without a Content-Length is counted as it arrives
    chunks = iter([b'{"upload": "', big.encode(), b'"}'])
    streamed = api.post("/api/encode", content=chunks,
                        headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_a_huge_image_is_refused_before_it_is_decoded(
        sessions: dict[str, ExplorerSession]) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, format="PNG")  # compresses to a few KB
    response = client(sessions["wide"]).post(
        "/api/encode", json={"upload": base64.b64encode(buf.getvalue()).decode()})
    assert response.status_code == 400 and "5000x5000" in response.json()["detail"]


def test_an_unexpected_error_is_a_500_without_a_traceback(
        sessions: dict[str, ExplorerSession], monkeypatch: pytest.MonkeyPatch) -> None:
    session = sessions["wide"]

    def broken(z: list[float], condition: str | None = None) -> None:
        raise RuntimeError("deep inside torch")

    monkeypatch.setattr(session, "decode", broken)
    response = client(session).post("/api/decode", json={"z": [0.0] * 6})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error (RuntimeError)"}


def test_concurrent_requests_share_one_model_safely(sessions: dict[str, ExplorerSession]) -> None:
    session = sessions["hvae"]
    rng = np.random.default_rng(1)
    latents = [rng.normal(size=session.model.latent_dim).tolist() for _ in range(48)]
    serial = [session.decode(z)["x"] for z in latents]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda z: session.decode(z)["x"], latents))
        scores = list(pool.map(lambda i: session.encode(session.example(i))["score"],
                               [0, 1, 2, 3] * 4))
    assert parallel == serial
    assert all(s == scores[i % 4] for i, s in enumerate(scores))


def test_the_command_refuses_bad_settings_in_one_line(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in ((["serve", str(tmp_path)], "config.json"),
                          (["serve", str(runs["vae"]), "--port", "70000"], "--port"),
                          (["serve", str(runs["vae"]), "--max-upload-mb", "0"],
                           "--max-upload-mb")):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_a_decompression_bomb_is_a_400(sessions: dict[str, ExplorerSession],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses > 2,000 pixels
    response = client(sessions["wide"]).post(
        "/api/encode", json={"upload": data_uri(png_of(np.zeros((60, 60))))})
    assert response.status_code == 400 and "larger than" in response.json()["detail"]


@pytest.mark.parametrize("body, message", [
    ({"upload": "data:image/png;base64"}, "no comma"),
    ({"upload": "data:,"}, "not a PNG or JPEG"),
])
def test_malformed_data_uris_are_400(body: dict[str, Any], message: str,
                                     sessions: dict[str, ExplorerSession]) -> None:
    response = client(sessions["wide"]).post("/api/encode", json=body)
    assert response.status_code == 400 and message in response.json()["detail"]


def test_a_16_bit_upload_is_refused(sessions: dict[str, ExplorerSession]) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(buf, format="PNG")
    response = client(sessions["wide"]).post("/api/encode", json={"upload": data_uri(
        buf.getvalue())})
    assert response.status_code == 400 and "more than 8 bits" in response.json()["detail"]


def test_the_models_own_refusals_are_400(sessions: dict[str, ExplorerSession],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from vaekit.errors import ConfigError

    session = sessions["wide"]

    def refuse(n: int, temperature: float, seed: int, condition: str | None = None) -> None:
        raise ConfigError("--temperature 0.5: sampling at a temperature needs a "
                          "reparameterized prior")

    monkeypatch.setattr(session, "sample", refuse)
    response = client(session).post("/api/sample", json={"n": 2, "temperature": 0.5})
    assert response.status_code == 400 and "reparameterized" in response.json()["detail"]


def test_a_table_row_with_the_wrong_number_of_fields_is_refused(
        sessions: dict[str, ExplorerSession]) -> None:
    api = client(sessions["csv"])
    for row in ("4.5,b,3,9", "4.5,b"):
        response = api.post("/api/encode", json={"upload": row})
        assert response.status_code == 400 and "fields; the table has 3 columns" in \
            response.json()["detail"]


def test_requests_for_another_host_name_are_refused(
        sessions: dict[str, ExplorerSession]) -> None:
    """A page on a domain that rebinds its name to 127.0.0.1 sends its own Host header."""
    api = client(sessions["wide"])
    assert api.get("/api/info", headers={"host": "attacker.example"}).status_code == 400
    assert api.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200


def test_a_conditional_run_decodes_the_class_it_is_given(
        sessions: dict[str, ExplorerSession]) -> None:
    session = sessions["cvae"]
    api, model = client(session), session.model
    info = api.get("/api/info").json()
    assert info["classes"] == [str(i) for i in range(10)] and 'id="class"' in api.get("/").text
    z = [0.3, -0.5]
    three = api.post("/api/decode", json={"z": z, "condition": "3"}).json()["x"]
    expected = model.decode_mean(torch.tensor([z]), condition="3")[0]
    assert np.allclose(image_of(three), image_of(session.show(expected)))
    assert three != api.post("/api/decode", json={"z": z, "condition": "8"}).json()["x"]
    # a held-out example is encoded with its own class, whatever the request names
    own = int(session.labels[2])
    encoded = api.post("/api/encode", json={"index": 2, "condition": str((own + 1) % 10)})
    assert encoded.json()["condition"] == str(own)
    mean = model.encode(session.held_out[2:3], condition=own).mean[0]
    assert np.allclose(encoded.json()["mean"], mean.tolist(), atol=1e-5)
    for path, body, message in (
            ("/api/decode", {"z": z}, "this model is conditional: give condition"),
            ("/api/sample", {"n": 2, "condition": "cat"}, "unknown class 'cat'"),
    ):
        r = api.post(path, json=body)
        assert r.status_code == 400 and message in r.json()["detail"], r.json()
    r = client(sessions["vae"]).post("/api/decode", json={"z": z, "condition": "3"})
    assert r.status_code == 400 and "not conditional" in r.json()["detail"]
