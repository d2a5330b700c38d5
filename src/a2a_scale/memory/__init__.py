"""The embedded ``memory`` backend: in-process state shared by replicas."""

from a2a_scale.memory.backend import MemoryBackend, create_backend
from a2a_scale.memory.lifecycle import MemoryQueueLifecycle
from a2a_scale.memory.push import MemoryPushNotificationConfigStore
from a2a_scale.memory.running import MemoryRunningTasks
from a2a_scale.memory.settings import MemorySettings
from a2a_scale.memory.space import MemorySpace, get_space
from a2a_scale.memory.store import MemoryTaskStore
from a2a_scale.memory.stream import MemoryEventStream

__all__ = [
    'MemoryBackend',
    'MemoryEventStream',
    'MemoryPushNotificationConfigStore',
    'MemoryQueueLifecycle',
    'MemoryRunningTasks',
    'MemorySettings',
    'MemorySpace',
    'MemoryTaskStore',
    'create_backend',
    'get_space',
]
