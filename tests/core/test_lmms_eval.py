"""The lmms-eval plugin: registered through lmms-eval's entry points, answering log-likelihood and generation
requests of a tiny local task with a tiny saved model and a trained-policy-shaped compressor, offline."""

import numpy as np
import pytest
import torch

lmms_eval = pytest.importorskip("lmms_eval")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A saved tiny Qwen2.5-VL, a saved (untrained) policy, and a 3-doc task: two clips and an image."""
    from PIL import Image

    from scorerl.compress.policy import TokenPolicy
    from scorerl.data.video_io import write_mp4
    from scorerl.envs.build import build_tiny_env

    root = tmp_path_factory.mktemp("lmms")
    env = build_tiny_env("qwen2_5_vl", seed=0, initializer_range=0.5)
    env.save_pretrained(root / "env")
    torch.manual_seed(0)
    TokenPolicy(env.hidden_size).save_pretrained(root / "policy")
    rng = np.random.default_rng(0)
    docs = []
    for i in range(2):
        write_mp4(root / f"v{i}.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
        docs.append({"visual": [str(root / f"v{i}.mp4")], "question": f"What moves {i}?", "answer": " A"})
    docs.append({"visual": [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))],
                 "question": "What colour?", "answer": " B"})
    return root, {"tiny": {"test": docs}}


def instance(kind, args, doc_id):
    from lmms_eval.api.instance import Instance

    return Instance(request_type=kind, arguments=args, idx=0, metadata={"task": "tiny", "doc_id": doc_id, "repeats": 1})


def test_registered_and_answers_through_scorerl(task):
    from lmms_eval.models import get_model

    from scorerl import ScoreCompressor
    from scorerl.integrations.lmms_eval import ScoreRLModel

    root, task_dict = task
    cls = get_model("scorerl")
    assert cls is ScoreRLModel
    model = cls.create_from_arg_string(f"pretrained={root / 'env'},arch=qwen2_5_vl,compressor={root / 'policy'},"
                                       "ratio=0.5,num_frames=4,frame_size=32,dtype=float32,device=cpu")
    model.task_dict = task_dict
    docs = task_dict["tiny"]["test"]

    def visual(doc):
        return doc["visual"]

    ll = model.loglikelihood([instance("loglikelihood", (d["question"], d["answer"], visual, i, "tiny", "test"), i)
                              for i, d in enumerate(docs)])
    gen = model.generate_until([instance("generate_until", (d["question"], {"max_new_tokens": 5, "until": ["\n"]},
                                                            visual, i, "tiny", "test"), i) for i, d in enumerate(docs)])
    # The same answers computed directly: tokens, the policy's half, scorerl's environment.
    compressor = ScoreCompressor.from_pretrained(root / "policy")
    for i, doc in enumerate(docs):
        request = model._request(doc["visual"], doc["question"], doc["answer"])
        assert int(request.keep.sum()) == request.keep.numel() // 2  # compressed: half the tokens
        want_keep = compressor.keep_mask(request.visual.features.float(), 0.5, request.visual.grid)
        assert torch.equal(request.keep, want_keep)
        n = len(model.env.tokenizer(doc["answer"], add_special_tokens=False).input_ids)
        ce = float(model.env.score([request])[0])
        assert ll[i][0] == pytest.approx(-ce * n, abs=1e-4) and isinstance(ll[i][1], bool)
        assert gen[i] == model.env.generate(request, max_new_tokens=5).split("\n")[0]


def test_baseline_and_full(task):
    from scorerl.integrations.lmms_eval import ScoreRLModel, cut_at_stops

    root, task_dict = task
    full = ScoreRLModel(pretrained=str(root / "env"), compressor="full", num_frames=4, frame_size=32,
                        dtype="float32", device="cpu")
    assert full._request(task_dict["tiny"]["test"][0]["visual"], "q", "").keep is None
    uniform = ScoreRLModel(pretrained=str(root / "env"), compressor="uniform", ratio=0.25, num_frames=4,
                           frame_size=32, dtype="float32", device="cpu")
    assert uniform._request(task_dict["tiny"]["test"][0]["visual"], "q", "").keep.float().mean() == 0.25
    vidcom2 = ScoreRLModel(pretrained=str(root / "env"), compressor="vidcom2", ratio=0.25, num_frames=4,
                           frame_size=32, dtype="float32", device="cpu")
    request = vidcom2._request(task_dict["tiny"]["test"][0]["visual"], "q", "")
    from scorerl.compress.baselines import vidcom2_steps

    budgets = vidcom2_steps(request.visual.features.float(), 0.25).budgets  # the published per-frame budgets
    assert request.keep.sum(1).tolist() == [int(b) for b in budgets]
    assert cut_at_stops("A. red\nB.", ["\n"]) == "A. red" and cut_at_stops("xyz", "y") == "x"
