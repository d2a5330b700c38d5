"""The deployment examples: Kubernetes manifests and docker-compose.

No cluster and no docker here: the manifests are validated against the
Kubernetes API schemas (strict, so a misspelt field fails), and both files
are checked for what a graceful rollout needs.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from serve_support import EXAMPLES

pytestmark = pytest.mark.memory

KUBERNETES = EXAMPLES / 'kubernetes'
VERSIONS = ['1.28.0', '1.33.0']
"""Oldest and a recent Kubernetes version the manifests must fit."""
DRAIN_SECONDS = 20


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(KUBERNETES.glob('*.yaml')):
        found.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        d for d in documents() if d['kind'] == kind and d['metadata']['name'] == name
    ]
    return found


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e['name']: e.get('value', '') for e in container['env']}


@pytest.mark.parametrize('version', VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    kinds = set()
    for document in documents():
        kubernetes_validate.validate(document, version, strict=True)
        kinds.add(document['kind'])
    assert {'Deployment', 'Service', 'PodDisruptionBudget'} <= kinds


def test_a_misspelt_field_fails_validation() -> None:
    """The validation is strict: the test above would catch a typo."""
    deployment = one('Deployment', 'a2a-agent')
    pod = deployment['spec']['template']['spec']
    broken = {
        **deployment,
        'spec': {
            **deployment['spec'],
            'template': {
                **deployment['spec']['template'],
                'spec': {**pod, 'terminationGracePeriod': 45},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_the_deployment_drains_within_its_grace_period() -> None:
    deployment = one('Deployment', 'a2a-agent')
    assert deployment['spec']['replicas'] == 3
    pod = deployment['spec']['template']['spec']
    (container,) = pod['containers']
    env = env_of(container)
    assert env['A2A_SCALE_BACKEND'] == 'redis'
    drain = float(env['A2A_SCALE_DRAIN_SECONDS'])
    assert drain == DRAIN_SECONDS
    assert container['livenessProbe']['httpGet']['path'] == '/healthz'
    assert container['readinessProbe']['httpGet']['path'] == '/readyz'
    pre_stop = container['lifecycle']['preStop']['exec']['command']
    assert pre_stop[0] == 'sleep'
    # preStop, then the drain, then the hand-over and the backend's stop.
    assert pod['terminationGracePeriodSeconds'] >= int(pre_stop[1]) + drain + 10
    labels = deployment['spec']['template']['metadata']['labels']
    for kind in ('Service', 'PodDisruptionBudget'):
        selector = one(kind, 'a2a-agent')['spec']['selector']
        selector = selector.get('matchLabels', selector)
        assert selector.items() <= labels.items(), kind
    assert one('PodDisruptionBudget', 'a2a-agent')['spec']['minAvailable'] == 2


def test_compose_runs_three_replicas_on_redis() -> None:
    compose = yaml.safe_load((EXAMPLES / 'docker-compose.yml').read_text())
    services = compose['services']
    assert services['redis']['image'].startswith('redis:')
    agents = {name: s for name, s in services.items() if name.startswith('agent-')}
    assert len(agents) == 3
    ports = set()
    for name, service in agents.items():
        assert service['image'] == 'a2a-scale-example', name
        assert service['build']['dockerfile'] == 'examples/Dockerfile', name
        env = service['environment']
        assert env['A2A_SCALE_BACKEND'] == 'redis', name
        assert env['A2A_SCALE_REDIS_URL'].startswith('redis://redis:'), name
        assert env['A2A_SCALE_PUBLIC_URL'].startswith('http://localhost:'), name
        assert float(env['A2A_SCALE_DRAIN_SECONDS']) == DRAIN_SECONDS, name
        assert int(service['stop_grace_period'].rstrip('s')) > DRAIN_SECONDS, name
        assert '/readyz' in ' '.join(service['healthcheck']['test']), name
        assert 'redis' in service['depends_on'], name
        ports.update(service['ports'])
    assert len(ports) == 3
    assert (EXAMPLES / 'Dockerfile').read_text().count('"a2a-scale", "serve"') == 1
