"""Backend settings, read from environment variables (see docs/backend.md for each one)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Short names for the SAM2.1 configs shipped inside the ``sam2`` package.
MODEL_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


class Settings(BaseSettings):
    """Every input has a secure default; relaxations are explicit."""

    model_config = SettingsConfigDict(env_prefix="SAM2_", extra="ignore")

    model: str = Field(
        "large",
        description="SAM2 config: tiny, small, base_plus, large, or a config path inside sam2.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Torch device; auto picks cuda when a GPU is visible."
    )
    checkpoint: str | None = Field(
        None, description="Weights: a local .pt path or s3://bucket/key in the model bucket."
    )
    checkpoint_sha256: str | None = Field(
        None, description="Expected sha256 of the checkpoint file (required with a checkpoint)."
    )
    allow_random_weights: bool = Field(
        False, description="Tests and benchmarks only: run with random weights, no checkpoint."
    )
    random_seed: int = Field(0, description="Torch seed used when weights are random.")
    weights_dir: str = Field(
        "/tmp/sam2-weights", description="Where checkpoints fetched from S3 are kept."
    )
    cache_max_mb: int = Field(2048, ge=0, description="Embedding cache bound in MiB.")
    cache_max_entries: int = Field(64, ge=0, description="Embedding cache bound in images.")
    max_image_bytes: int = Field(50 * 2**20, gt=0, description="Largest image download.")
    max_image_pixels: int = Field(40_000_000, gt=0, description="Largest decoded image.")
    fetch_timeout_s: float = Field(
        30.0, gt=0, description="Total deadline for one image download, redirects included."
    )
    max_redirects: int = Field(
        3, ge=0, le=10, description="Redirects followed per image, each re-checked."
    )
    max_request_bytes: int = Field(16 * 2**20, gt=0, description="Largest request body.")
    max_json_depth: int = Field(32, ge=4, le=200, description="Deepest JSON nesting accepted.")
    max_decodes: int = Field(2, ge=1, description="Images decoded at the same time.")
    max_prompts: int = Field(32, ge=1, description="Prompts (context items) per request.")
    prompts_per_pass: int = Field(
        8, ge=1, description="Prompts per model-lock slice: other clicks run in between."
    )
    prewarm: bool = Field(True, description="Encode a task's image when Label Studio opens it.")
    prewarm_max_tasks: int = Field(
        4, ge=0, description="Images prewarmed per prompt-less /predict (kept within the cache)."
    )
    image_memo_ttl_s: float = Field(
        600.0, ge=0, description="How long an image URL maps to its content hash (no refetch)."
    )
    basic_auth_user: str | None = Field(None, description="User Label Studio sends (BASIC_AUTH).")
    basic_auth_pass: SecretStr | None = Field(None, description="Its password.")
    basic_auth_file: str | None = Field(
        None, description="File holding user:password (a mounted Secret); wins over the pair."
    )
    auth_disabled: bool = Field(
        False, description="Explicit opt-out of caller authentication (logged as an error)."
    )
    s3_direct: bool = Field(
        False, description="Read s3:// task URIs straight from S3 (IRSA) instead of via LS."
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint override (VPC endpoint).")
    allowed_image_hosts: list[str] = Field(
        default_factory=list,
        description="Extra hosts whose absolute http(s) image URLs may be fetched (no token).",
    )
    torch_threads: int | None = Field(None, ge=1, description="torch.set_num_threads on CPU.")
    video_frames: int = Field(
        30, ge=1, le=1000, description="Frames tracked past the last prompted frame (video)."
    )
    video_max_objects: int = Field(8, ge=1, le=64, description="Objects tracked per call.")
    video_max_bytes: int = Field(500 * 2**20, gt=0, description="Largest video download.")
    video_state_max_mb: int = Field(
        2048, ge=1, description="Bound on all video inference states in MiB (LRU eviction)."
    )
    video_max_states: int = Field(4, ge=1, description="Tasks holding a video inference state.")
    label_studio_url: str | None = Field(
        None,
        validation_alias=AliasChoices("LABEL_STUDIO_URL", "SAM2_LABEL_STUDIO_URL"),
        description="Label Studio base URL used to resolve task image URLs.",
    )
    label_studio_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("LABEL_STUDIO_API_KEY", "SAM2_LABEL_STUDIO_API_KEY"),
        description="Personal access token (JWT, refreshed) or legacy token for Label Studio.",
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value in MODEL_CONFIGS or value.endswith(".yaml"):
            return value
        raise ValueError(
            f"SAM2_MODEL={value!r} is not a known config: use one of "
            f"{', '.join(MODEL_CONFIGS)} or a configs/...yaml path inside the sam2 package"
        )

    @field_validator("checkpoint_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError(
                f"SAM2_CHECKPOINT_SHA256={value!r} is not a sha256 hex digest (64 hex characters)"
            )
        return value

    @property
    def config_file(self) -> str:
        return MODEL_CONFIGS.get(self.model, self.model)
