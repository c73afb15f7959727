"""Environment variables -> one typed job configuration, as the user set it.

Every `TRAIN_<FIELD>` sets a field of the job's own `JobSettings`, of TRL's `ModelConfig`, or of the
method's TRL config (`SFTConfig`, `DPOConfig`, ...; see jobs/methods/). Field types come from the
generated catalog (jobs/config/catalog.py), so this module never imports TRL and stays fast. Every
problem is collected and reported together: unknown names with a "did you mean", values that do not
parse or are out of range, settings of another method, an unknown accelerate config. What follows from
the settings on this machine (defaults, process counts, the checks across them) is worked out once by
jobs/config/resolved.py.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jobs.config.catalog import FieldSpec, describe_dataclass, load_catalog
from jobs.config.topology import Topology, read_topology
from jobs.data.adapters import ADAPTERS
from jobs.data.formats import FORMATS
from jobs.data.hygiene import TEXT_CHECKS
from jobs.data.mixture import VARIABLE as DATA_MIX
from jobs.data.mixture import Mixture, parse_mixture, resolve_sources
from jobs.errors import ConfigError
from jobs.layout import OutputLayout
from jobs.methods import METHODS

PREFIX = "TRAIN_"
ACCELERATE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "accelerate_configs"
DATA_FORMATS = ("auto", *FORMATS, *ADAPTERS)


@dataclass(frozen=True)
class JobSettings:
    """The job's own settings; TRL's settings live in the catalog."""

    method: str | None = field(default=None, metadata={"help": "Training method. Required.", "values": tuple(METHODS)})
    data_path: str | None = field(
        default=None,
        metadata={
            "help": "Training data (.jsonl, .json, .parquet, optionally .gz): a file, a glob, a directory of "
            "shards, or a Hugging Face dataset snapshot folder (its train split; validation, else test, is the "
            "evaluation data unless TRAIN_EVAL_DATA_PATH is set). Required."
        },
    )
    data_mix: str | None = field(
        default=None,
        metadata={
            "help": "Training data as a TRL dataset mixture instead of TRAIN_DATA_PATH: a .yaml/.yml path, or the "
            "YAML itself, in TRL's CLI config shape (`datasets:` entries with path, data_dir, data_files, split, "
            "columns, fraction, and the job's `format`; `test_split_size`). Each entry is a local file, glob or "
            "folder; `fraction`s take the first rows of each source as TRL does. Other keys of a TRL recipe "
            "(model_name_or_path, learning_rate, ...) must equal their TRAIN_* variables."
        },
    )
    eval_data_path: str | None = field(
        default=None,
        metadata={
            "help": "Separate evaluation data: a file, a glob or a directory of shards. Checked for overlap with "
            "the training data."
        },
    )
    eval_split: float = field(
        default=0.0,
        metadata={
            "help": "Fraction of the training data held out for evaluation, split once from the seed.",
            "min": 0.0,
            "max": 0.5,
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where checkpoints and final/ are written. Default: output/<method>."},
    )
    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "Launch through `accelerate launch` with this config: a name from accelerate_configs/ "
            "(cpu, multi_cpu, single_gpu, multi_gpu, multi_node, zero2, zero3, zero3_offload) or a YAML path. "
            "Unset: train in this process."
        },
    )
    num_processes: int | None = field(
        default=None,
        metadata={"help": "Training processes over all machines; overrides the accelerate config.", "min": 1},
    )
    num_machines: int | None = field(
        default=None,
        metadata={
            "help": "Machines (pods) of the run; overrides the accelerate config. Default: PET_NNODES.",
            "min": 1,
        },
    )
    machine_rank: int | None = field(
        default=None,
        metadata={
            "help": "This machine's rank, 0 for the main one. Default: PET_NODE_RANK, then an Indexed "
            "Job's JOB_COMPLETION_INDEX.",
            "min": 0,
        },
    )
    main_process_ip: str | None = field(
        default=None,
        metadata={
            "help": "Address of machine 0 (an Indexed Job: <job>-0.<headless service>). Default: PET_MASTER_ADDR."
        },
    )
    main_process_port: int | None = field(
        default=None,
        metadata={
            "help": "Rendezvous port on machine 0. Default: PET_MASTER_PORT, else 29500.",
            "min": 1,
            "max": 65535,
        },
    )
    data_format: str = field(
        default="auto",
        metadata={
            "help": "Format of the data files: auto (detected over the whole file), a native format "
            "(schemas/), or an adapter applied to every record.",
            "values": DATA_FORMATS,
        },
    )
    drop_invalid: bool = field(
        default=False,
        metadata={
            "help": "Drop invalid or leaking records instead of refusing the data; each is listed in the "
            "validation report. TRAIN_MAX_INVALID_FRACTION still caps how many may go."
        },
    )
    max_invalid_fraction: float = field(
        default=0.01,
        metadata={
            "help": "With TRAIN_DROP_INVALID, refuse the data when more than this fraction is invalid.",
            "min": 0.0,
            "max": 1.0,
        },
    )
    text_errors: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Character hygiene findings that make a record invalid instead of a warning, comma-separated: "
            "control, private_use, replacement (U+FFFD), bidi (bidirectional controls), zero_width (inside "
            "words), mojibake (UTF-8 read as Latin-1/cp1252).",
            "values": TEXT_CHECKS,
        },
    )
    fold_system_turn: bool = field(
        default=False,
        metadata={
            "help": "Fold a conversation's leading system turn into its first user turn (the system text, a "
            "blank line, then the user's), as LLaMA-Factory does for chat templates without a system role "
            "(Gemma, Mistral). Off: a record the template refuses is a data error at its line."
        },
    )
    ranked_pairs: Literal["first", "all"] = field(
        default="first",
        metadata={
            "help": "Records with a ranked list of answers (LLaMA-Factory's alpaca ranking `output`): first: "
            "one pair, the first answer chosen over the second (as LLaMA-Factory trains them); all: every "
            "answer chosen over each later one, k(k-1)/2 pairs."
        },
    )
    max_errors_shown: int = field(
        default=20, metadata={"help": "How many data errors are printed and kept in the report.", "min": 1}
    )
    stop_grace_seconds: float = field(
        default=300.0,
        metadata={
            "help": "Seconds the job may take to stop after SIGTERM: set it to the pod's "
            "terminationGracePeriodSeconds (k8s/ sets both). A step plus a checkpoint save must fit; "
            "`accelerate launch`'s agent waits this long before it kills the ranks.",
            "min": 1.0,
        },
    )
    resume: Literal["auto", "never", "force"] = field(
        default="auto",
        metadata={
            "help": "auto: resume from the newest complete checkpoint unless the settings or data changed since "
            "it was written (then exit 2 naming the changes); force: resume anyway; never: start over, setting "
            "the old checkpoints aside."
        },
    )
    lock_stale_seconds: float = field(
        default=60.0,
        metadata={
            "help": "A job finding another's lease on the output directory (writer.lease) takes it over only "
            "after its holder has not renewed it for this long; while it renews, the job exits 7 (retried). "
            "Keep it above a pause the holder may take (a slow NFS write): a holder that finds its lease "
            "taken stops at once.",
            "min": 1.0,
        },
    )
    loading_timeout: float = field(
        default=0.0,
        metadata={
            "help": "Seconds the time before the first step (model loading, TRL's tokenisation, the rendezvous) "
            "may take before TrainJobLoadingTooLong fires; also the process group's timeout (ddp_timeout, at "
            "least 1800) unless TRAIN_DDP_TIMEOUT is set. 0: derived, 600 + the weights at 50 MB/s + 10 ms a "
            "training record (jobs/estimate/loading.py).",
            "min": 0.0,
        },
    )
    stall_timeout: float = field(
        default=0.0,
        metadata={
            "help": "Seconds a training rank may go without finishing a step (or an evaluation batch) before "
            "it dumps every thread's stack and the launcher ends the group with exit 8 (retried: the restart "
            "resumes). 0: derived from the run, 5 x (longest step + longest checkpoint save) and at least 600 "
            "(1800 for the first save, not yet measured).",
            "min": 0.0,
        },
    )
    max_nonfinite_steps: int = field(
        default=3,
        metadata={
            "help": "Stop with exit 6 after this many optimizer steps in a row whose loss or gradient norm is "
            "NaN or infinite; no checkpoint of non-finite weights is marked complete, and no final/ is published.",
            "min": 1,
        },
    )
    memory_check: Literal["refuse", "warn", "off"] = field(
        default="refuse",
        metadata={
            "help": "Before the model loads, estimate the peak memory of a training process (`entrypoint.py "
            "estimate` prints it) against the GPU's memory, or on CPU the smaller of the cgroup limit and RAM. "
            "refuse: exit 4 above 95 % with the cheapest fix, warn above 80 %; warn: only warn; off: no estimate."
        },
    )
    merge_adapter: bool = field(
        default=False,
        metadata={
            "help": "A LoRA or QLoRA run also publishes final/merged/: the adapter merged into the unquantised base "
            "in the base's dtype, sharded like it, with the inference chat template, loaded and checked against "
            "the adapter before it is published. `entrypoint.py merge OUTPUT_DIR` does it for a finished run."
        },
    )
    profile: int = field(
        default=0,
        metadata={
            "help": "Record this many optimizer steps with the torch profiler, after 2 warm-up steps, into "
            "<output>/profile/: a Chrome trace, the top operators and a memory timeline per rank. 0: off.",
            "min": 0,
        },
    )
    samples: int = field(
        default=8,
        metadata={
            "help": "Greedy generations from the model being trained, at each evaluation and at the end, for this "
            "many fixed prompts (the first distinct ones of the evaluation data, else of the training data), "
            "appended to <output>/samples.jsonl and to TensorBoard. 0: off.",
            "min": 0,
        },
    )
    sample_max_new_tokens: int = field(
        default=64,
        metadata={
            "help": "Tokens generated at most per sample (TRAIN_SAMPLES). A sample that ends within them on an "
            "end-of-sequence id (the model's, or the chat template's closing token) counts as stopped.",
            "min": 1,
        },
    )
    metrics_port: int = field(
        default=9464,
        metadata={
            "help": "Port of the Prometheus exporter (/metrics, /healthz), served for the whole job by the "
            "entrypoint's exporter process. 0 disables it.",
            "min": 0,
            "max": 65535,
        },
    )
    metrics_addr: str = field(default="0.0.0.0", metadata={"help": "Address the exporter binds to."})
    metrics_linger_seconds: float = field(
        default=60.0,
        metadata={
            "help": "After the job ends, keep serving the final metrics until the next scrape reads them, "
            "at most this long, so Prometheus records the outcome; no wait when nothing scraped during the run.",
            "min": 0.0,
        },
    )
    pushgateway_url: str | None = field(
        default=None, metadata={"help": "Push the final outcome (exit code, end time) once to this Pushgateway."}
    )
    log_format: Literal["text", "json"] = field(
        default="text", metadata={"help": "Log line format: text for people, json for log pipelines."}
    )


# Ranges transformers/TRL do not check themselves (a negative batch size fails deep inside a run).
# (minimum, maximum, minimum is exclusive)
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "per_device_train_batch_size": (1, None, False),
    "per_device_eval_batch_size": (1, None, False),
    "gradient_accumulation_steps": (1, None, False),
    "learning_rate": (0, None, True),
    "num_train_epochs": (0, None, True),
    "logging_steps": (0, None, True),
    "save_steps": (0, None, True),
    "eval_steps": (0, None, True),
    "save_total_limit": (1, None, False),
    "max_grad_norm": (0, None, False),
    "warmup_steps": (0, None, False),
    "weight_decay": (0, None, False),
    "max_length": (1, None, False),
    "lora_r": (1, None, False),
    "lora_alpha": (0, None, True),
    "lora_dropout": (0, 1, False),
    "beta": (0, None, True),
    "label_smoothing": (0, 0.5, False),
    "dataloader_num_workers": (0, None, False),
}

# Names of secrets: a password, secret or credential, an API/access key, or a name ending in "token" (hub_token,
# HF_TOKEN) other than a tokenizer's special tokens. Not "tokens" or "key" anywhere: average_tokens_across_devices
# and eos_token are settings a run must show (and compare when it resumes).
_SECRET_NAME = re.compile(
    r"password|secret|credential|(api|access|private|auth)_?key|(?<!eos_)(?<!bos_)(?<!pad_)(?<!unk_)(?<!sep_)"
    r"(?<!cls_)(?<!mask_)token$",
    re.IGNORECASE,
)
# Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT_<N>_TCP... for every Service in the namespace.
_SERVICE_LINK_NAME = re.compile(r"_SERVICE_(HOST|PORT)(_\w+)?$|_PORT_\d+_(TCP|UDP|SCTP)(_\w+)?$")
_SERVICE_LINK_VALUE = re.compile(r"^(tcp|udp|sctp)://", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class JobConfig:
    """Everything one run needs: the job's settings and the user's TRL/model overrides by field name."""

    job: JobSettings
    model: dict[str, Any]
    training: dict[str, Any]
    run_id: str
    accelerate_config: Path | None = None  # resolved from TRAIN_ACCELERATE_CONFIG
    ignored_service_links: tuple[str, ...] = ()
    topology: Topology = field(default_factory=Topology)  # machines and processes: TRAIN_*, PET_*, JOB_COMPLETION_INDEX

    @property
    def method(self) -> str:
        assert self.job.method is not None  # load_config refuses a config without a method
        return self.job.method

    @property
    def output_dir(self) -> Path:
        return Path(self.job.output_dir or f"output/{self.method}")

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.output_dir)

    def effective(self) -> dict[str, Any]:
        """The configuration as set (before device-dependent defaults), secrets redacted."""
        settings = {"job": dataclasses.asdict(self.job), "model": self.model, "training": self.training}
        return redact(settings)


def redact(value: Any) -> Any:
    """A copy with the value of every secret-looking key replaced, at any depth."""
    if isinstance(value, Mapping):
        return {
            key: ("***" if _SECRET_NAME.search(str(key)) and item not in (None, "") else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


@cache
def job_fields() -> dict[str, FieldSpec]:
    return describe_dataclass(JobSettings)


def _spec_for(name: str, method: str | None) -> tuple[str | None, FieldSpec | None]:
    """(group, spec) of a setting for this method; group None when it belongs to another method only."""
    catalog = load_catalog()
    if name in job_fields():
        return "job", job_fields()[name]
    for group in ("model", "training", method or ""):
        if group in catalog and name in catalog[group]:
            return group, catalog[group][name]
    return None, None


def all_setting_names() -> set[str]:
    names = set(job_fields())
    for group in load_catalog().values():
        names.update(group)
    return names


def parse_value(variable: str, raw: str, spec: FieldSpec) -> Any:
    """Parse one variable by its field spec; raise ValueError with a message a user can act on."""
    if spec.get("optional") and raw.strip() in ("", "null", "None"):
        return None
    kind = spec["kind"]
    if kind == "union":
        for candidate in spec["kinds"]:
            try:
                return _parse_scalar(raw, candidate)
            except ValueError:
                continue
        raise ValueError(f"{variable}={raw!r} is not a valid {' or '.join(spec['kinds'])}")
    if kind == "list":
        return _parse_list(variable, raw, spec["item"], spec.get("choices"))
    if kind == "json":
        return _parse_json(variable, raw)
    if kind == "choice":
        if raw in spec["choices"]:
            return raw
        raise ValueError(f"{variable}={raw!r} is not one of: {', '.join(spec['choices'])}")
    try:
        return _parse_scalar(raw, kind)
    except ValueError:
        example = {"bool": "true or false", "int": "an integer such as 100", "float": "a number such as 0.001"}
        raise ValueError(f"{variable}={raw!r} is not a valid {kind}; expected {example.get(kind, kind)}") from None


def _parse_scalar(raw: str, kind: str) -> Any:
    text = raw.strip()
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(text)
    if kind == "int":
        return int(text)
    if kind == "float":
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(text)
        return number
    return raw


def _parse_list(variable: str, raw: str, item_kind: str, choices: list[str] | None = None) -> list[Any]:
    text = raw.strip()
    if text.startswith("["):
        items = _parse_json(variable, text)
        if not isinstance(items, list):
            raise ValueError(f"{variable}={raw!r} is not a JSON list")
        items = [str(item) for item in items]
    else:
        items = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [item for item in items if choices is not None and item not in choices]
    if unknown:
        raise ValueError(f"{variable}: {', '.join(unknown)} not among: {', '.join(choices or ())}")
    try:
        return [_parse_scalar(item, item_kind) for item in items]
    except ValueError:
        raise ValueError(
            f"{variable}={raw!r}: every item must be a {item_kind} (comma-separated or a JSON list)"
        ) from None


def _parse_json(variable: str, raw: str) -> Any:
    text = raw.strip()
    if not text.startswith(("{", "[")):
        return raw  # a path to a JSON/YAML file, which transformers/TRL load themselves
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{variable} is not valid JSON ({error.msg} at column {error.colno})") from None


def check_range(variable: str, name: str, value: Any, spec: FieldSpec) -> None:
    low, high, exclusive = _RANGES.get(name, (spec.get("min"), spec.get("max"), False))
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if name == "max_steps" and value != -1 and value < 1:
        raise ValueError(f"{variable}={value} must be -1 (use num_train_epochs) or at least 1")
    if low is not None and (value < low or (exclusive and value == low)):
        relation = "greater than" if exclusive else "at least"
        raise ValueError(f"{variable}={value} is out of range: it must be {relation} {low}")
    if high is not None and value > high:
        raise ValueError(f"{variable}={value} is out of range: it must be at most {high}")


def _unknown_message(variable: str) -> str:
    candidates = [PREFIX + name.upper() for name in all_setting_names()]
    close = difflib.get_close_matches(variable, candidates, n=1, cutoff=0.75)
    hint = f"did you mean {close[0]}?" if close else "run `python entrypoint.py --help` for the list"
    return f"{variable} is not a setting; {hint}"


def _other_method_message(variable: str, name: str, method: str) -> str | None:
    others = [other for other in METHODS if other != method and name in load_catalog().get(other, {})]
    if others:
        return f"{variable} applies to TRAIN_METHOD={' or '.join(others)} only, but TRAIN_METHOD={method}; unset it"
    return None


def _read_method(environ: Mapping[str, str], problems: list[str]) -> str | None:
    raw = environ.get(PREFIX + "METHOD")
    names = ", ".join(METHODS)
    if raw is None or not raw.strip():
        problems.append(f"TRAIN_METHOD is not set; set it to one of: {names}")
        return None
    method = raw.strip().lower()
    if method not in METHODS:
        problems.append(f"TRAIN_METHOD={raw!r} is not a method; valid methods: {names}")
        return None
    return method


def resolve_accelerate_config(value: str) -> Path:
    """A name from accelerate_configs/ or a path to an Accelerate YAML file; ValueError otherwise."""
    named = ACCELERATE_CONFIG_DIR / f"{value}.yaml"
    if named.is_file():
        return named
    path = Path(value)
    if path.is_file():
        return path
    names = sorted(p.stem for p in ACCELERATE_CONFIG_DIR.glob("*.yaml"))
    raise ValueError(f"TRAIN_ACCELERATE_CONFIG={value!r} is neither a file nor one of: {', '.join(names)}")


def _is_service_link(variable: str, raw: str) -> bool:
    return bool(_SERVICE_LINK_NAME.search(variable) or _SERVICE_LINK_VALUE.match(raw.strip()))


def load_config(environ: Mapping[str, str], require_data: bool = True) -> JobConfig:
    """Read every TRAIN_* variable; raise ConfigError listing every problem found (a memory estimate
    needs no data: `require_data=False`)."""
    problems: list[str] = []
    method = _read_method(environ, problems)
    values: dict[str, dict[str, Any]] = {"job": {"method": method}, "model": {}, "training": {}}
    ignored: list[str] = []
    for variable in sorted(environ):
        if not variable.startswith(PREFIX) or variable == PREFIX + "METHOD":
            continue
        raw = environ[variable]
        if _is_service_link(variable, raw):
            ignored.append(variable)
            continue
        problem = _read_variable(variable, raw, method, values)
        if problem:
            problems.append(problem)
    training = {**values.pop("training"), **values.pop(method or "", {})}
    accelerate_config = _accelerate_config(values["job"].get("accelerate_config"), problems)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with the TRAIN_* variables", problems)
    job = JobSettings(**values["job"])
    topology = read_topology(job, environ, problems)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with the distributed settings", problems)
    _require(job, require_data)
    if job.data_mix:
        _check_data_mix(job, {**values["job"], **values["model"], **training}, method)
    _check_model_combinations(values["model"])
    if job.merge_adapter and not values["model"].get("use_peft"):
        raise ConfigError("TRAIN_MERGE_ADAPTER=true merges a LoRA adapter into its base: it needs TRAIN_USE_PEFT=true "
                          "(a full fine-tune's final/ is already a whole model)")  # fmt: skip
    return JobConfig(
        job=job,
        model=values["model"],
        training=training,
        run_id=uuid.uuid4().hex[:12],
        accelerate_config=accelerate_config,
        ignored_service_links=tuple(ignored),
        topology=topology,
    )


def _accelerate_config(value: str | None, problems: list[str]) -> Path | None:
    if not value:
        return None
    try:
        return resolve_accelerate_config(value)
    except ValueError as error:
        problems.append(str(error))
        return None


def _read_variable(variable: str, raw: str, method: str | None, values: dict[str, dict[str, Any]]) -> str | None:
    """Parse one variable into `values`; return a problem description instead of raising."""
    name = variable[len(PREFIX) :].lower()
    group, spec = _spec_for(name, method)
    if spec is None or group is None:
        if method and (message := _other_method_message(variable, name, method)):
            return message
        return None if name in all_setting_names() else _unknown_message(variable)
    try:
        value = parse_value(variable, raw, spec)
        check_range(variable, name, value, spec)
    except ValueError as error:
        return str(error)
    values.setdefault(group, {})[name] = value
    return None


def _require(job: JobSettings, require_data: bool) -> None:
    if require_data and not (job.data_path or job.data_mix):
        raise ConfigError(
            "TRAIN_DATA_PATH is not set; point it at a .jsonl/.json/.parquet file (`make <method>` sets a demo), "
            "or give a TRL dataset mixture in TRAIN_DATA_MIX"
        )
    if job.data_path and job.data_mix:
        raise ConfigError("TRAIN_DATA_PATH and TRAIN_DATA_MIX are both set; give the data once: a path, or a mixture")
    if job.eval_data_path and job.eval_split > 0:
        raise ConfigError("TRAIN_EVAL_DATA_PATH and TRAIN_EVAL_SPLIT are both set; use one source of eval data")


def _check_model_combinations(model: dict[str, Any]) -> None:
    quantized = model.get("load_in_4bit") or model.get("load_in_8bit")
    if model.get("load_in_4bit") and model.get("load_in_8bit"):
        raise ConfigError("TRAIN_LOAD_IN_4BIT and TRAIN_LOAD_IN_8BIT are both true; choose one")
    if quantized and not model.get("use_peft"):
        raise ConfigError(
            "quantized weights cannot be trained directly: "
            "TRAIN_LOAD_IN_4BIT/8BIT=true needs TRAIN_USE_PEFT=true (QLoRA)"
        )


def _check_data_mix(job: JobSettings, given: dict[str, Any], method: str | None) -> None:
    """TRAIN_DATA_MIX: its YAML and entries (jobs/data/mixture.py), what it may not be combined with, its recipe
    keys held to the TRAIN_* variables, and every source found; one ConfigError with every problem."""
    mixture, problems = parse_mixture(str(job.data_mix))
    problems += [*_mix_conflicts(job, mixture), *_recipe_problems(mixture.settings, given, method)]
    try:
        resolve_sources(mixture)
    except ConfigError as error:
        problems.extend(error.problems)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with {DATA_MIX} ({mixture.source})", problems)


def _mix_conflicts(job: JobSettings, mixture: Mixture) -> list[str]:
    problems = []
    if job.data_format != "auto":
        problems.append(f"TRAIN_DATA_FORMAT={job.data_format} with {DATA_MIX}: give each entry its `format:` "
                        "instead, and unset TRAIN_DATA_FORMAT")  # fmt: skip
    if mixture.test_split_size is not None and (job.eval_split > 0 or job.eval_data_path):
        other = "TRAIN_EVAL_SPLIT" if job.eval_split > 0 else "TRAIN_EVAL_DATA_PATH"
        problems.append(f"{DATA_MIX} sets test_split_size and {other} is set too; use one source of eval data")
    return problems


def _recipe_problems(recipe: Mapping[str, Any], given: dict[str, Any], method: str | None) -> list[str]:
    """A TRL recipe's keys beside its mixture: each must be a setting, equal to what its TRAIN_* variable set
    (unset counts as different), so the run trains as the recipe says while the variables stay its one source."""
    problems = []
    for name, value in recipe.items():
        variable = PREFIX + name.upper()
        group, spec = _spec_for(name, method)
        if spec is None or group is None:
            why = (_other_method_message(variable, name, method) if method else None) or _unknown_message(variable)
            problems.append(f"{DATA_MIX} key {name!r}: {why}; delete the key")
            continue
        raw = _yaml_text(value)
        try:
            wanted = parse_value(f"{DATA_MIX} key {name}", raw, spec)
        except ValueError as error:
            problems.append(f"{error}; fix the key or delete it")
            continue
        if name not in given:
            problems.append(f"{DATA_MIX} sets {name}: {raw}, but {variable} is not set; set {variable}={raw} "
                            "(the variables are the run's settings), or delete the key")  # fmt: skip
        elif given[name] != wanted:
            problems.append(f"{DATA_MIX} sets {name}: {raw}, but {variable}={given[name]!r}; set {variable}={raw}, "
                            "or delete the key")  # fmt: skip
    return problems


def _yaml_text(value: Any) -> str:
    """A YAML value as a TRAIN_* variable would spell it, for the setting's own parser."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
