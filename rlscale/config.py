"""Typed run configuration: the one schema of a run (pydantic, unknown keys forbidden).

`RunConfig` is made of the sections in `rlscale.config_sections` and checks across them.
Loading (YAML file + `key.sub=value` overrides, errors naming the file and the dotted key)
is `rlscale.config_io`; the checks across fields `rlscale.config_checks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from rlscale.config_checks import check_env_kwargs, resolve_algo
from rlscale.config_sections import (
    AlgoConfig,
    BuiltinModelConfig,
    EnvConfig,
    EvalConfig,
    LearnerConfig,
    PromptConfig,
    RayConfig,
    RolloutConfig,
    ScalingConfig,
    StrictModel,
    TelemetryConfig,
    TrainerConfig,
    VerifyConfig,
)
from rlscale.presets import ALGO_PRESETS

GROUP_RELATIVE = ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline", "batch_norm")


class ConfigError(ValueError):
    """A config that cannot run; the message names the file and the key."""


def _check_colocated(cfg) -> None:
    """Colocated mode pairs one engine with one learner rank on each GPU and puts the engine to
    sleep while the rank updates; anything that would have them work at once is refused."""
    if cfg.trainer.off_policy_steps:
        raise ValueError("rollout.colocate: the engines sleep during updates, so off-policy sampling "
                         "(trainer.off_policy_steps > 0) cannot overlap them; set it to 0")  # fmt: skip
    if cfg.rollout.tensor_parallel_size != 1:
        raise ValueError("rollout.colocate: one engine per GPU; set rollout.tensor_parallel_size=1")
    if cfg.rollout.workers != cfg.learner.world_size:
        raise ValueError(
            f"rollout.colocate: one engine and one learner rank per GPU, so rollout.workers "
            f"({cfg.rollout.workers}) must equal learner.world_size ({cfg.learner.world_size})"
        )


class RunConfig(StrictModel):
    name: str = Field("run", description="run name: the run directory is <output_dir>/<name>")
    output_dir: str = Field("runs", description="folder of run directories")
    model: str = Field(
        "builtin:tiny",
        description="builtin:tiny|mini|small|mid|medium, or a local Hugging Face model directory",
    )
    env: EnvConfig = Field(
        default_factory=EnvConfig, description="the environment (task source and verifier)"
    )
    prompt: PromptConfig = Field(
        default_factory=PromptConfig, description="how a task becomes the model's input"
    )
    algo: AlgoConfig = Field(
        default_factory=AlgoConfig, description="the RL algorithm: a preset and overrides"
    )
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="generation")
    learner: LearnerConfig = Field(default_factory=LearnerConfig, description="the optimiser")
    trainer: TrainerConfig = Field(
        default_factory=TrainerConfig, description="the loop: steps, seed, checkpoints"
    )
    builtin: BuiltinModelConfig = Field(
        default_factory=BuiltinModelConfig, description="warm start of builtin models"
    )
    verify: VerifyConfig = Field(default_factory=VerifyConfig, description="verifier limits")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="pass@k evaluation on fixed tasks")
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig, description="metric sinks")
    scaling: ScalingConfig = Field(
        default_factory=ScalingConfig, description="live refits of the scaling curves"
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray placement")

    @field_validator("env", mode="before")
    @classmethod
    def _env_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _fill_preset_and_check(self) -> RunConfig:
        from rlscale.envs import env_names

        if self.algo.name not in ALGO_PRESETS:
            raise ValueError(
                f"algo.name: unknown preset {self.algo.name!r}; choose from {sorted(ALGO_PRESETS)}"
            )
        resolve_algo(self.algo)
        if self.env.name not in env_names():
            raise ValueError(f"env.name: unknown environment {self.env.name!r}; choose from {env_names()}")
        check_env_kwargs(self.env.name, self.env.kwargs)
        group_relative = self.algo.advantage in GROUP_RELATIVE
        if group_relative and self.rollout.group_size < 2:
            raise ValueError(
                f"rollout.group_size: {self.algo.name} normalises rewards within a group, "
                "which needs group_size >= 2"
            )
        if not self.model.startswith("builtin:") and not (Path(self.model) / "config.json").is_file():
            raise ValueError(
                f"model: {self.model!r} is neither builtin:<size> nor a local HF model dir "
                "(rlscale model import brings in a GGUF file; make smollm2 imports SmolLM2)"
            )
        if self.rollout.colocate:
            _check_colocated(self)
        if self.trainer.off_policy_steps and (self.rollout.temperature != 1.0 or self.rollout.top_p != 1.0):
            raise ValueError(
                "trainer.off_policy_steps: the stale batch's PPO ratio uses the sampler's log-probs, "
                "which equal the policy's only at rollout.temperature=1 and rollout.top_p=1"
            )
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name
