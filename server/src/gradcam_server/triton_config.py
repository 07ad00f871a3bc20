"""The Triton model config (config.pbtxt) of a Grad-CAM model, generated from the contract."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from gradcam_client.remote import contract
from gradcam_client.remote.contract import ModelInfo


def _proto_dtype(name: str) -> int:
    """model_config.proto's DataType for a contract dtype name ("FP32" -> TYPE_FP32; BYTES is
    TYPE_STRING there)."""
    return mc.DataType.Value("TYPE_STRING" if name == "BYTES" else f"TYPE_{name}")


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model Triton loads: ``all``, the ``latest`` K (Triton's default
    with K = 1), or ``specific`` ones. Text form: "all", "latest:2", "specific:1,3"."""

    kind: str = "latest"
    count: int = 1  # for latest
    versions: tuple[int, ...] = ()  # for specific

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """From its text form; ValueError naming the forms for anything else."""
        kind, _, rest = text.strip().lower().partition(":")
        try:
            if kind == "all" and not rest:
                return cls("all", 0)
            if kind == "latest":
                count = int(rest or "1")
                if count >= 1:
                    return cls("latest", count)
            if kind == "specific":
                versions = tuple(sorted({int(v) for v in rest.split(",") if v.strip()}))
                if versions and versions[0] >= 1:
                    return cls("specific", 0, versions)
        except ValueError:
            pass
        raise ValueError(
            f"unknown version policy {text!r}: use all, latest:K (K >= 1) or specific:1,2,..."
        )

    @classmethod
    def from_config(cls, config: mc.ModelConfig) -> VersionPolicy:
        """The policy a config states (Triton's default when it states none)."""
        which = config.version_policy.WhichOneof("policy_choice")
        if which == "all":
            return cls("all", 0)
        if which == "specific":
            return cls("specific", 0, tuple(sorted(config.version_policy.specific.versions)))
        if which == "latest":
            return cls("latest", config.version_policy.latest.num_versions)
        return cls()

    def apply(self, config: mc.ModelConfig) -> None:
        """Write the policy into a config."""
        policy = config.version_policy
        if self.kind == "all":
            policy.all.SetInParent()
        elif self.kind == "specific":
            policy.specific.versions[:] = list(self.versions)
        else:
            policy.latest.num_versions = self.count

    def loads(self, versions: list[int]) -> list[int]:
        """Which of a model's version numbers Triton loads under this policy."""
        if self.kind == "all":
            return sorted(versions)
        if self.kind == "specific":
            return sorted(set(versions) & set(self.versions))
        return sorted(versions)[-self.count :]

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return f"latest:{self.count}"


@dataclass(frozen=True)
class ServingOptions:
    """How Triton batches and queues requests for the model.

    Priority 1 is for interactive users (the dashboard), priority 2 (the default) for batch
    jobs; each level has its own bounded queue, and a full queue answers UNAVAILABLE.
    A request may carry a shorter queue time-out of its own (live clients do: a frame that
    waited too long is rejected, UNAVAILABLE, rather than explained late); `queue_timeout_us`
    is the time-out of requests that carry none. Triton lets a request only shorten the
    model's time-out, so it is long (an hour) rather than none.
    """

    max_batch_size: int = 16
    max_queue_delay_us: int = 5000
    priority_levels: int = 2
    default_priority: int = 2
    max_queue_size: int = 64
    instance_count: int = 1
    version_policy: VersionPolicy | None = None  # None: Triton's default (adding a version
    # to a model with `export`: the policy its config states)
    queue_timeout_us: int = 3_600_000_000

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if not 1 <= self.default_priority <= self.priority_levels:
            raise ValueError("default_priority must be between 1 and priority_levels")
        if self.max_queue_size < 1 or self.instance_count < 1:
            raise ValueError("max_queue_size and instance_count must be at least 1")
        if self.queue_timeout_us < 1:
            raise ValueError("queue_timeout_us must be at least 1")


def build_config(info: ModelInfo, options: ServingOptions) -> mc.ModelConfig:
    """The full model config: tensors from the contract, batching, queues, warm-up."""
    config = mc.ModelConfig(
        name=info.name,
        backend="python",
        max_batch_size=options.max_batch_size,
    )
    optional = info.optional_inputs()
    for name, (dtype, dims) in info.inputs().items():
        config.input.add(
            name=name, data_type=_proto_dtype(dtype), dims=list(dims), optional=name in optional
        )
    for name, (dtype, dims) in info.outputs().items():
        config.output.add(name=name, data_type=_proto_dtype(dtype), dims=list(dims))

    batching = config.dynamic_batching
    batching.max_queue_delay_microseconds = options.max_queue_delay_us
    batching.priority_levels = options.priority_levels
    batching.default_priority_level = options.default_priority
    policy = batching.default_queue_policy
    policy.max_queue_size = options.max_queue_size
    policy.timeout_action = mc.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = options.queue_timeout_us
    policy.allow_timeout_override = True

    if options.version_policy not in (None, VersionPolicy()):  # the default stays implicit
        options.version_policy.apply(config)

    # No kind: Triton puts the instances on the GPUs when there are any, else on the CPU.
    config.instance_group.add(count=options.instance_count)

    warmup = config.model_warmup.add(name="zeros", batch_size=1)
    for name, (dtype, dims) in info.inputs().items():
        if name == contract.ENCODED_FRAMES:  # a request carries frames one way only
            continue
        warmup.inputs[name].data_type = _proto_dtype(dtype)
        warmup.inputs[name].dims.extend(dims)
        warmup.inputs[name].zero_data = True

    for key, value in info.to_parameters().items():
        config.parameters[key].string_value = value
    return config


def config_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_config_text(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def model_info_from_config(config: mc.ModelConfig) -> ModelInfo:
    """What a client reads back from the config (the same parsing the client uses)."""
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    return ModelInfo.from_parameters(config.name, parameters, config.max_batch_size)
