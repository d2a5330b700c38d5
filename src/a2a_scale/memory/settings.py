"""Settings of the embedded memory backend."""

from pydantic import Field
from pydantic_settings import BaseSettings

from a2a_scale.settings import plugin_settings_config


class MemorySettings(BaseSettings):
    """Settings read from ``A2A_SCALE_MEMORY_*`` variables."""

    model_config = plugin_settings_config('A2A_SCALE_MEMORY_')

    max_events_per_task: int = Field(
        default=10_000,
        gt=0,
        description='Events kept per task log; older ones are dropped.',
    )
