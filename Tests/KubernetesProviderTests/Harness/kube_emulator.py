#!/usr/bin/env python3
"""A Kubernetes API emulator for the KubernetesProvider tests.

Usage::

    python3 kube_emulator.py --port 0 [--host 127.0.0.1] [--kubelet]
                             [--backoff-max SECONDS] [--keep-volumes]
                             [--no-exit-with-parent] [--verbose]

It serves PyPI's ``kmock`` KubernetesEmulator (an in-memory object store with
list/watch/create/patch/delete) on ``--host`` (default 127.0.0.1) and prints
exactly ``listening <port>`` as the first line of stdout. Everything else goes
to stderr. SIGTERM/SIGINT end it cleanly (exit status 0).

With ``--kubelet`` it also plays the parts of the control plane that the
emulator lacks, against the Docker daemon that DOCKER_HOST names (through the
``docker`` CLI):

* a Deployment controller (pods from ``spec.template``, scaling, status,
  Recreate / a simple RollingUpdate, garbage collection of a deleted
  deployment's pods, generation/observedGeneration);
* a PersistentVolumeClaim "provisioner" (claims become Bound; a claim is a
  docker named volume ``kmock-<namespace>-<claim>``, removed when the claim
  is deleted and no container uses it any more);
* a scheduler + kubelet that runs each pod's first container with
  ``docker run -d --network host`` and keeps the pod's status up to date
  (restarts per restartPolicy, exits, deletion with the grace period).

All the watches go through this server's own HTTP endpoint, so that the
emulator emits watch events for every change the harness makes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import uuid
from typing import Any

import aiohttp
import kmock

log = logging.getLogger('kube_emulator')

RESOURCES = [
    'v1/pods', 'v1/services', 'v1/secrets', 'v1/persistentvolumeclaims', 'v1/configmaps',
    'v1/namespaces', 'v1/events', 'apps/v1/deployments',
]

POD_IP = '127.0.0.1'
NODE_NAME = 'kmock-node'
EMULATOR_LABEL = 'kmock.emulator'
POD_LABEL = 'kmock.pod'
NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # as Kubernetes' rand.String


def now() -> str:
    """RFC 3339, UTC, whole seconds, with Z (what Kubernetes writes)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def docker_time(value: str | None) -> str:
    """Docker's nanosecond timestamps → RFC 3339 UTC whole seconds with Z."""
    if not value or value.startswith('0001-'):
        return now()
    m = re.match(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)', value)
    if not m:
        return now()
    if value.endswith('Z'):
        return m.group(1) + 'Z'
    try:
        text = re.sub(r'\.\d+', '', value)
        return datetime.datetime.fromisoformat(text).astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    except ValueError:
        return m.group(1) + 'Z'


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------
# Quantities

_BINARY = {'Ki': 2**10, 'Mi': 2**20, 'Gi': 2**30, 'Ti': 2**40, 'Pi': 2**50, 'Ei': 2**60}
_DECIMAL = {'n': 1e-9, 'u': 1e-6, 'm': 1e-3, '': 1, 'k': 1e3, 'K': 1e3, 'M': 1e6, 'G': 1e9, 'T': 1e12, 'P': 1e15, 'E': 1e18}


def parse_quantity(value: Any) -> float:
    """A Kubernetes resource quantity ("500m", "1", "512Mi", "1G", "1e3", 2) as a number."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    m = re.fullmatch(r'([+-]?[0-9]*\.?[0-9]+)([eE][+-]?[0-9]+)?([a-zA-Z]*)', text)
    if not m:
        raise ValueError(f'invalid quantity {value!r}')
    number = float(m.group(1) + (m.group(2) or ''))
    suffix = m.group(3)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    raise ValueError(f'invalid quantity suffix in {value!r}')


# ----------------------------------------------------------------------------------------------
# The API server: kmock's emulator plus the defaults a real API server fills in

def merge_patch(value: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386), as the emulator applies it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(value) if isinstance(value, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


class Emulator(kmock.KubernetesEmulator):
    """On create: metadata.namespace (from the URL), uid, creationTimestamp, generation 1, and a name
    from generateName. On a spec change of a deployment (patch of the object or /scale): generation+1.
    Everything else is kmock's (no resourceVersion, no status, no selectors)."""

    async def _handle(self, request):  # type: ignore[override]
        try:
            self._defaults(request)
        except Exception:
            log.exception('defaulting failed')
        return await super()._handle(request)

    def _defaults(self, request) -> None:
        if request.resource is None or not isinstance(request.data, dict):
            return
        plural = request.resource.plural
        if request.action == kmock.action.CREATE:
            md = request.data.get('metadata')
            if not isinstance(md, dict):
                md = request.data['metadata'] = {}
            if request.namespace and not md.get('namespace'):
                md['namespace'] = request.namespace
            if not md.get('name') and md.get('generateName'):
                md['name'] = md['generateName'] + ''.join(random.choice(NAME_ALPHABET) for _ in range(5))
            md.setdefault('uid', str(uuid.uuid4()))
            md.setdefault('creationTimestamp', now())
            if plural == 'deployments':
                md.setdefault('generation', 1)
        elif request.action == kmock.action.UPDATE and plural == 'deployments' and request.name \
                and request.subresource in (None, 'scale') and 'spec' in request.data:
            object_key = (request.resource, request.namespace, request.name)
            if object_key not in self.objects:
                return
            obj = self.objects[object_key]
            if obj.deleted:
                return
            current = obj.raw
            merged = merge_patch(current, request.data)
            if (merged.get('spec') or {}) != (current.get('spec') or {}):
                generation = (current.get('metadata') or {}).get('generation')
                generation = generation if isinstance(generation, int) else 1
                md = request.data.get('metadata')
                if not isinstance(md, dict):
                    md = request.data['metadata'] = {}
                md['generation'] = generation + 1


# ----------------------------------------------------------------------------------------------
# Docker CLI

class DockerError(Exception):
    def __init__(self, args: list[str], code: int, stderr: str):
        super().__init__(f"docker {' '.join(args[:3])}… exited {code}: {stderr.strip()}")
        self.code = code
        self.stderr = stderr.strip()


async def docker(*args: str, check: bool = True, timeout: float | None = None) -> str:
    """Runs the docker CLI. If cancelled, it still lets the CLI finish (so that a container
    it was creating exists, or not, for sure) before re-raising the cancellation."""
    argv = [str(a) for a in args]
    proc = await asyncio.create_subprocess_exec(
        'docker', *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    comm = asyncio.ensure_future(proc.communicate())
    try:
        if timeout is None:
            out, err = await asyncio.shield(comm)
        else:
            out, err = await asyncio.wait_for(asyncio.shield(comm), timeout)
    except asyncio.TimeoutError:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        await comm
        raise DockerError(argv, -1, 'timed out')
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(comm, 120)
        except BaseException:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        raise
    if check and proc.returncode != 0:
        raise DockerError(argv, proc.returncode, err.decode(errors='replace'))
    return out.decode(errors='replace')


async def docker_inspect(kind: str, name: str) -> dict[str, Any] | None:
    try:
        out = await docker(kind, 'inspect', '--format', '{{json .}}', name)
    except DockerError:
        return None
    try:
        return json.loads(out)
    except ValueError:
        return None


# ----------------------------------------------------------------------------------------------
# API client (the harness talks to its own server over HTTP, so watch events happen)

class NotFound(Exception):
    pass


class Api:
    def __init__(self, base: str):
        self.base = base.rstrip('/')
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    @staticmethod
    def path(resource: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        group_version, plural = resource.rsplit('/', 1)
        prefix = '/api/v1' if group_version == 'v1' else f'/apis/{group_version}'
        parts = [prefix]
        if namespace:
            parts.append(f'namespaces/{namespace}')
        parts.append(plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return '/'.join(parts)

    async def request(self, method: str, path: str, body: Any = None, content_type: str = 'application/json') -> Any:
        assert self.session is not None
        data = None if body is None else json.dumps(body)
        headers = {'Content-Type': content_type} if body is not None else {}
        async with self.session.request(method, self.base + path, data=data, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            text = await resp.text()
            if resp.status == 404:
                raise NotFound(path)
            if resp.status >= 300:
                raise RuntimeError(f'{method} {path}: HTTP {resp.status}: {text[:300]}')
            return json.loads(text) if text else None

    async def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.request('GET', self.path(resource, namespace, name))

    async def get_or_none(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.get(resource, namespace, name)
        except NotFound:
            return None

    async def list(self, resource: str) -> list[dict[str, Any]]:
        result = await self.request('GET', self.path(resource))
        return list(result.get('items') or [])

    async def create(self, resource: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request('POST', self.path(resource, namespace), body)

    async def patch(self, resource: str, namespace: str, name: str, body: dict[str, Any], sub: str | None = None) -> bool:
        """Merge-patches; False if the object is gone."""
        try:
            await self.request('PATCH', self.path(resource, namespace, name, sub), body,
                               'application/merge-patch+json')
            return True
        except NotFound:
            return False

    async def delete(self, resource: str, namespace: str, name: str) -> bool:
        try:
            await self.request('DELETE', self.path(resource, namespace, name))
            return True
        except NotFound:
            return False

    async def watch(self, resource: str, handler, on_sync=None, stopping: asyncio.Event | None = None) -> None:
        """List (then on_sync(items)), then watch cluster-wide for ever; reconnects."""
        assert self.session is not None
        url = self.base + self.path(resource)
        while True:
            try:
                items = await self.list(resource)
                if on_sync is not None:
                    await on_sync(items)
                async with self.session.get(url, params={'watch': 'true'},
                                            timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f'watch {resource}: HTTP {resp.status}')
                    buffer = b''
                    async for chunk in resp.content.iter_any():
                        buffer += chunk
                        while b'\n' in buffer:
                            line, buffer = buffer.split(b'\n', 1)
                            if not line.strip():
                                continue
                            try:
                                event = json.loads(line)
                            except ValueError:
                                log.warning('watch %s: bad line %r', resource, line[:200])
                                continue
                            try:
                                await handler(event.get('type'), event.get('object') or {})
                            except Exception:
                                log.exception('watch %s: handler failed', resource)
                log.info('watch %s ended; reconnecting', resource)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if stopping is not None and stopping.is_set():
                    return
                log.warning('watch %s failed (%s); reconnecting', resource, exc)
            await asyncio.sleep(0.5)


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get('metadata') or {}


def key_of(obj: dict[str, Any]) -> tuple[str, str]:
    m = meta(obj)
    return (m.get('namespace') or 'default', m.get('name') or '')


# ----------------------------------------------------------------------------------------------
# Kubelet: one PodRunner per pod

class PodGone(Exception):
    pass


class PodRunner:
    def __init__(self, kubelet: 'Kubelet', pod: dict[str, Any]):
        self.kubelet = kubelet
        self.api = kubelet.api
        self.pod = pod
        self.namespace, self.name = key_of(pod)
        self.container_name = f'kmock-{self.namespace}-{self.name}'
        self.deleted = asyncio.Event()
        self.state = 'new'       # new → starting → running ⇄ restarting → terminated
        self.container_id: str | None = None
        self.restart_count = 0
        self.last_state: dict[str, Any] = {}
        self.start_time: str | None = None
        self.conditions: dict[str, dict[str, Any]] = {}
        self.tmpdirs: list[str] = []
        self.task: asyncio.Task | None = None
        self.image_id = ''
        self.started_at: float = 0.0
        self.backoff = 0.0
        self.last_waiting: tuple[str, str] | None = None
        self.tasks: set[asyncio.Task] = set()

    # -- helpers ----------------------------------------------------------------

    def spawn(self, coro) -> asyncio.Task:
        """A task of this pod's (teardown cancels and awaits them all)."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def spec(self) -> dict[str, Any]:
        return self.pod.get('spec') or {}

    @property
    def container(self) -> dict[str, Any]:
        containers = self.spec.get('containers') or [{}]
        return containers[0] or {}

    @property
    def restart_policy(self) -> str:
        return self.spec.get('restartPolicy') or 'Always'

    @property
    def grace(self) -> int:
        value = self.spec.get('terminationGracePeriodSeconds')
        try:
            return max(0, int(value)) if value is not None else 30
        except (TypeError, ValueError):
            return 30

    def log(self, level: int, msg: str, *args: Any) -> None:
        log.log(level, f'pod {self.namespace}/{self.name}: ' + msg, *args)

    async def sleep_or_deleted(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.deleted.wait(), seconds)
        except asyncio.TimeoutError:
            return
        raise PodGone()

    def set_condition(self, type_: str, status: str, reason: str | None = None, message: str | None = None) -> None:
        old = self.conditions.get(type_)
        cond: dict[str, Any] = {'type': type_, 'status': status}
        cond['lastTransitionTime'] = old['lastTransitionTime'] if old and old['status'] == status else now()
        if reason:
            cond['reason'] = reason
        if message:
            cond['message'] = message
        self.conditions[type_] = cond

    def conditions_list(self) -> list[dict[str, Any]]:
        order = ['PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady', 'PodScheduled']
        return [self.conditions[t] for t in order if t in self.conditions]

    async def patch_status(self, status: dict[str, Any]) -> None:
        if self.deleted.is_set():
            raise PodGone()
        status = dict(status)
        status.setdefault('conditions', self.conditions_list())
        if not await self.api.patch('v1/pods', self.namespace, self.name, {'status': status}, sub='status'):
            raise PodGone()

    def container_status(self, state: dict[str, Any], ready: bool) -> dict[str, Any]:
        c = self.container
        cs: dict[str, Any] = {
            'name': c.get('name') or 'main',
            'image': c.get('image') or '',
            'imageID': self.image_id,
            'ready': ready,
            'started': 'running' in state,
            'restartCount': self.restart_count,
            'state': state,
            'lastState': self.last_state,
        }
        if self.container_id:
            cs['containerID'] = f'docker://{self.container_id}'
        return cs

    async def set_waiting(self, reason: str, message: str, phase: str = 'Pending') -> None:
        if (reason, message) != self.last_waiting:
            self.last_waiting = (reason, message)
            self.log(logging.WARNING, '%s: %s', reason, message)
        self.set_condition('ContainersReady', 'False', 'ContainersNotReady', f'containers with unready status: [{self.container.get("name")}]')
        self.set_condition('Ready', 'False', 'ContainersNotReady', f'containers with unready status: [{self.container.get("name")}]')
        await self.patch_status({
            'phase': phase,
            'hostIP': POD_IP, 'hostIPs': [{'ip': POD_IP}],
            'startTime': self.start_time or now(),
            'containerStatuses': [self.container_status({'waiting': {'reason': reason, 'message': message}}, False)],
        })

    # -- the pod's life ---------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except (PodGone, asyncio.CancelledError):
            pass
        except Exception:
            self.log(logging.ERROR, 'failed', exc_info=True)

    async def _run(self) -> None:
        self.state = 'starting'
        # A former pod of the same name may still be stopping.
        previous = self.kubelet.teardowns.get(self.key)
        if previous is not None:
            self.log(logging.INFO, 'waiting for the previous container of this name to go')
            await asyncio.shield(previous)
        if self.spec.get('nodeName') != NODE_NAME:
            if not await self.api.patch('v1/pods', self.namespace, self.name, {'spec': {'nodeName': NODE_NAME}}):
                raise PodGone()
        status = self.pod.get('status') or {}
        if not status.get('phase'):
            await self.patch_status({'phase': 'Pending', 'qosClass': self.qos_class()})

        # Scheduling: every claim must exist.
        while True:
            missing_claims = []
            for vol in self.spec.get('volumes') or []:
                claim = (vol.get('persistentVolumeClaim') or {}).get('claimName')
                if claim and await self.api.get_or_none('v1/persistentvolumeclaims', self.namespace, claim) is None:
                    missing_claims.append(claim)
            if not missing_claims:
                break
            message = '0/1 nodes are available: ' + ', '.join(
                f'persistentvolumeclaim "{c}" not found' for c in missing_claims) + '.'
            if self.conditions.get('PodScheduled', {}).get('message') != message:
                self.log(logging.WARNING, 'unschedulable: %s', message)
                self.set_condition('PodScheduled', 'False', 'Unschedulable', message)
                await self.patch_status({'phase': 'Pending'})
            await self.sleep_or_deleted(1.0)
        self.set_condition('PodScheduled', 'True')
        self.start_time = self.start_time or now()
        self.set_condition('Initialized', 'True')
        self.set_condition('PodReadyToStartContainers', 'True')
        await self.patch_status({'phase': 'Pending', 'hostIP': POD_IP, 'hostIPs': [{'ip': POD_IP}],
                                 'podIP': POD_IP, 'podIPs': [{'ip': POD_IP}], 'startTime': self.start_time})
        await self.create_and_start()

    def qos_class(self) -> str:
        res = self.container.get('resources') or {}
        if not res.get('limits') and not res.get('requests'):
            return 'BestEffort'
        if res.get('limits') and (not res.get('requests') or res.get('requests') == res.get('limits')) \
                and {'cpu', 'memory'} <= set(res['limits']):
            return 'Guaranteed'
        return 'Burstable'

    async def create_and_start(self) -> None:
        """Image check, config, `docker run`; retries the waiting states until deleted."""
        image = self.container.get('image') or ''
        while True:
            info = await docker_inspect('image', image) if image else None
            if info is not None:
                self.image_id = info.get('Id') or ''
                break
            if (self.container.get('imagePullPolicy') or '') == 'Never':
                reason, message = 'ErrImageNeverPull', f'Container image "{image}" is not present with pull policy of Never'
            else:
                reason, message = 'ImagePullBackOff', f'Back-off pulling image "{image}": no image can be pulled here'
            await self.set_waiting(reason, message)
            await self.sleep_or_deleted(2.0)

        backoff = 0.25
        while True:
            try:
                argv = await self.docker_run_args(image)
            except ConfigError as exc:
                await self.set_waiting('CreateContainerConfigError', str(exc))
                await self.sleep_or_deleted(1.0)
                continue
            await self.remove_stale_container()
            if self.deleted.is_set():
                raise PodGone()
            shown = [re.sub(r'=.*', '=…', a, flags=re.S) if i and argv[i - 1] == '-e' else a
                     for i, a in enumerate(argv)]
            self.log(logging.INFO, 'docker %s', ' '.join(shown))
            try:
                out = await docker(*argv)
                self.container_id = out.strip().splitlines()[-1] if out.strip() else None
                break
            except DockerError as exc:
                info = await docker_inspect('container', self.container_name)
                if info is not None and (info.get('Config') or {}).get('Labels', {}).get(EMULATOR_LABEL) == str(os.getpid()):
                    # Created but failed to start (e.g. executable not found): it "exited".
                    self.container_id = info.get('Id')
                    self.state = 'exiting'
                    self.log(logging.WARNING, 'start failed: %s', exc.stderr)
                    self.spawn(self.on_exit(start_error=exc.stderr))
                    return
                await self.set_waiting('CreateContainerError', exc.stderr)
                await self.sleep_or_deleted(backoff)
                backoff = min(backoff * 2, self.kubelet.backoff_max)
        await self.report_running()

    async def report_running(self) -> None:
        info = await docker_inspect('container', self.container_id or self.container_name) or {}
        state = info.get('State') or {}
        if info.get('Id'):
            self.container_id = info['Id']
        if state.get('Status') not in (None, 'running'):
            # Already exited: let the monitor see it (it checks state 'running').
            self.state = 'running'
            return
        self.started_at = asyncio.get_running_loop().time()
        self.set_condition('ContainersReady', 'True')
        self.set_condition('Ready', 'True')
        self.state = 'running'
        await self.patch_status({
            'phase': 'Running',
            'hostIP': POD_IP, 'hostIPs': [{'ip': POD_IP}],
            'podIP': POD_IP, 'podIPs': [{'ip': POD_IP}],
            'startTime': self.start_time or now(),
            'containerStatuses': [self.container_status(
                {'running': {'startedAt': docker_time(state.get('StartedAt'))}}, True)],
        })
        self.log(logging.INFO, 'running (container %s, restarts %d)', (self.container_id or '')[:12], self.restart_count)

    async def remove_stale_container(self) -> None:
        info = await docker_inspect('container', self.container_name)
        if info is None:
            return
        owner = ((info.get('Config') or {}).get('Labels') or {}).get(EMULATOR_LABEL)
        if owner and owner != str(os.getpid()) and owner.isdigit() and pid_alive(int(owner)):
            raise ConfigError(f'container name {self.container_name} is taken by the emulator of pid {owner}')
        self.log(logging.INFO, 'removing stale container %s', self.container_name)
        await docker('rm', '-f', self.container_name, check=False)

    async def on_exit(self, vanished: bool = False, start_error: str | None = None) -> None:
        """The container stopped (or could not start, or vanished): apply the restart policy."""
        try:
            await self._on_exit(vanished, start_error)
        except (PodGone, asyncio.CancelledError):
            pass
        except Exception:
            self.log(logging.ERROR, 'exit handling failed', exc_info=True)

    async def _on_exit(self, vanished: bool, start_error: str | None) -> None:
        if self.deleted.is_set():
            return
        self.state = 'restarting'
        info = None if vanished else await docker_inspect('container', self.container_id or self.container_name)
        state = (info or {}).get('State') or {}
        code = int(state.get('ExitCode', 137 if vanished else 1) or 0)
        if start_error is not None:
            code = code or 128
            reason = 'StartError'
        elif state.get('OOMKilled'):
            reason = 'OOMKilled'
        else:
            reason = 'Completed' if code == 0 else 'Error'
        terminated: dict[str, Any] = {
            'exitCode': code, 'reason': reason,
            'startedAt': docker_time(state.get('StartedAt')), 'finishedAt': docker_time(state.get('FinishedAt')),
        }
        if start_error:
            terminated['message'] = start_error
        if self.container_id:
            terminated['containerID'] = f'docker://{self.container_id}'
        self.log(logging.INFO, 'container exited %d (%s)', code, reason)
        policy = self.restart_policy
        restart = policy == 'Always' or (policy == 'OnFailure' and code != 0)
        if not restart:
            self.state = 'terminated'
            self.set_condition('ContainersReady', 'False', 'PodCompleted')
            self.set_condition('Ready', 'False', 'PodCompleted')
            await self.patch_status({
                'phase': 'Succeeded' if code == 0 else 'Failed',
                'containerStatuses': [self.container_status({'terminated': terminated}, False)],
            })
            return
        # Restart (with a short, capped exponential back-off; reset after a long run).
        ran_for = asyncio.get_running_loop().time() - self.started_at if self.started_at else 0
        if ran_for > 10:
            self.backoff = 0.0
        delay = self.backoff
        self.restart_count += 1
        self.last_state = {'terminated': terminated}
        self.set_condition('ContainersReady', 'False', 'ContainersNotReady', f'containers with unready status: [{self.container.get("name")}]')
        self.set_condition('Ready', 'False', 'ContainersNotReady', f'containers with unready status: [{self.container.get("name")}]')
        if delay > 0:
            await self.patch_status({
                'phase': 'Running',
                'containerStatuses': [self.container_status({'waiting': {
                    'reason': 'CrashLoopBackOff',
                    'message': f'back-off {delay:g}s restarting failed container={self.container.get("name")} pod={self.name}'}}, False)],
            })
            await self.sleep_or_deleted(delay)
        self.backoff = min(max(delay * 2, 0.25), self.kubelet.backoff_max)
        if self.deleted.is_set():
            raise PodGone()
        if vanished or info is None or start_error is not None:
            self.container_id = None
            await self.create_and_start()
            return
        try:
            await docker('start', self.container_id or self.container_name)
        except DockerError as exc:
            self.log(logging.WARNING, 'docker start failed: %s', exc.stderr)
            # The monitor will see it exited again (or it is gone).
            self.state = 'running'
            return
        await self.report_running()

    async def teardown(self) -> None:
        """Deleted: stop (with the grace period) and remove the container, clean temp dirs."""
        self.deleted.set()
        tasks = [t for t in self.tasks if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if await docker_inspect('container', self.container_name) is not None:
                self.log(logging.INFO, 'stopping container (grace %ds)', self.grace)
                await docker('stop', '-t', str(self.grace), self.container_name, check=False)
                await docker('rm', '-f', self.container_name, check=False)
        except Exception:
            self.log(logging.ERROR, 'teardown failed', exc_info=True)
        for d in self.tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        self.log(logging.INFO, 'torn down')

    # -- docker run arguments ---------------------------------------------------

    def field_value(self, path: str) -> str:
        m = meta(self.pod)
        simple = {
            'metadata.name': self.name, 'metadata.namespace': self.namespace,
            'metadata.uid': m.get('uid') or '', 'spec.nodeName': NODE_NAME,
            'spec.serviceAccountName': self.spec.get('serviceAccountName') or 'default',
            'status.podIP': POD_IP, 'status.hostIP': POD_IP, 'status.podIPs': POD_IP, 'status.hostIPs': POD_IP,
        }
        if path in simple:
            return simple[path]
        fm = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
        if fm:
            return str((m.get(fm.group(1)) or {}).get(fm.group(2), ''))
        raise ConfigError(f'unsupported fieldRef {path!r}')

    async def object_data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        resource = 'v1/secrets' if kind == 'secret' else 'v1/configmaps'
        obj = await self.api.get_or_none(resource, self.namespace, name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind} "{name}" not found')
        return decode_data(obj, kind)

    async def env(self) -> list[tuple[str, str]]:
        c = self.container
        result: dict[str, str] = {}
        for src in c.get('envFrom') or []:
            prefix = src.get('prefix') or ''
            for kind, field in (('secret', 'secretRef'), ('configmap', 'configMapRef')):
                ref = src.get(field)
                if ref:
                    data = await self.object_data(kind, ref.get('name') or '', bool(ref.get('optional')))
                    for k, v in (data or {}).items():
                        result[prefix + k] = v
        for e in c.get('env') or []:
            name = e.get('name')
            if not name:
                continue
            if 'value' in e and e.get('value') is not None:
                result[name] = expand(str(e['value']), result)
                continue
            vf = e.get('valueFrom') or {}
            if not vf:
                result[name] = ''
            elif 'secretKeyRef' in vf or 'configMapKeyRef' in vf:
                kind, ref = ('secret', vf['secretKeyRef']) if 'secretKeyRef' in vf else ('configmap', vf['configMapKeyRef'])
                optional = bool(ref.get('optional'))
                data = await self.object_data(kind, ref.get('name') or '', optional)
                if data is None:
                    continue
                if ref.get('key') not in data:
                    if optional:
                        continue
                    raise ConfigError(f"couldn't find key {ref.get('key')} in {'Secret' if kind == 'secret' else 'ConfigMap'} {self.namespace}/{ref.get('name')}")
                result[name] = data[ref['key']]
            elif 'fieldRef' in vf:
                result[name] = self.field_value((vf['fieldRef'] or {}).get('fieldPath') or '')
            elif 'resourceFieldRef' in vf:
                ref = vf['resourceFieldRef'] or {}
                res = ref.get('resource') or ''
                kind, _, what = res.partition('.')
                value = ((c.get('resources') or {}).get(kind) or {}).get(what)
                if value is None:
                    result[name] = str(os.cpu_count() or 1) if what == 'cpu' else '0'
                else:
                    divisor = parse_quantity(ref.get('divisor') or 1)
                    result[name] = str(int(math.ceil(parse_quantity(value) / divisor)))
            else:
                raise ConfigError(f'unsupported valueFrom for {name}')
        return list(result.items())

    async def docker_run_args(self, image: str) -> list[str]:
        c = self.container
        env = await self.env()
        env_map = dict(env)
        argv = ['run', '-d', '--network', 'host', '--name', self.container_name,
                '--label', f'{POD_LABEL}={self.namespace}/{self.name}',
                '--label', f'{EMULATOR_LABEL}={os.getpid()}',
                '--label', f'kmock.container={c.get("name") or ""}']
        if (self.pod.get('spec') or {}).get('shareProcessNamespace'):
            # The pod's pause container is then PID 1 and the container's process is not:
            # docker-init plays that part.
            argv += ['--init']
        for k, v in env:
            argv += ['-e', f'{k}={v}']
        if c.get('workingDir'):
            argv += ['--workdir', c['workingDir']]
        if c.get('tty'):
            argv += ['-t']
        if c.get('stdin'):
            argv += ['-i']
        limits = (c.get('resources') or {}).get('limits') or {}
        if limits.get('cpu') is not None:
            cpus = parse_quantity(limits['cpu'])
            top = float(os.cpu_count() or 1)
            if cpus > top:
                self.log(logging.WARNING, 'cpu limit %s > %g cpus here; using %g', limits['cpu'], top, top)
                cpus = top
            argv += ['--cpus', f'{max(cpus, 0.01):g}']
        if limits.get('memory') is not None:
            mem = int(parse_quantity(limits['memory']))
            if mem < 6 * 2**20:
                self.log(logging.WARNING, 'memory limit %s < 6MiB (docker minimum); using 6MiB', limits['memory'])
                mem = 6 * 2**20
            argv += ['--memory', str(mem)]
        argv += await self.mounts()
        command = [expand(str(x), env_map) for x in (c.get('command') or [])]
        args = [expand(str(x), env_map) for x in (c.get('args') or [])]
        if command:
            argv += ['--entrypoint', command[0], image] + command[1:] + args
        else:
            argv += [image] + args
        return argv

    async def mounts(self) -> list[str]:
        volumes = {v.get('name'): v for v in self.spec.get('volumes') or []}
        prepared: dict[str, tuple[str, str]] = {}  # volume name → (type, source)
        argv: list[str] = []
        for vm in self.container.get('volumeMounts') or []:
            vname = vm.get('name')
            vol = volumes.get(vname)
            if vol is None:
                raise ConfigError(f'volumeMount {vname} has no volume')
            if vname not in prepared:
                prepared[vname] = await self.prepare_volume(vol)
            kind, source = prepared[vname]
            target = vm.get('mountPath') or '/'
            sub = vm.get('subPath') or ''
            read_only = bool(vm.get('readOnly')) or kind.endswith('-ro')
            if kind.startswith('volume'):
                if sub:
                    self.log(logging.WARNING, 'subPath %r of a claim is not supported; mounting the whole volume', sub)
                spec = f'type=volume,src={source},dst={target}'
            else:
                src = os.path.join(source, sub) if sub else source
                if sub and not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
                spec = f'type=bind,src={src},dst={target}'
            if read_only:
                spec += ',readonly'
            argv += ['--mount', spec]
        return argv

    def tmpdir(self, what: str) -> str:
        d = tempfile.mkdtemp(prefix=f'kmock-{self.namespace}-{self.name}-{what}-', dir=self.kubelet.tmproot)
        os.chmod(d, 0o755)
        self.tmpdirs.append(d)
        return d

    async def prepare_volume(self, vol: dict[str, Any]) -> tuple[str, str]:
        name = vol.get('name') or 'vol'
        if 'secret' in vol or 'configMap' in vol:
            kind = 'secret' if 'secret' in vol else 'configmap'
            src = vol.get('secret') if kind == 'secret' else vol.get('configMap')
            src = src or {}
            obj_name = src.get('secretName') if kind == 'secret' else src.get('name')
            data = await self.object_data(kind, obj_name or '', bool(src.get('optional')))
            data = data or {}
            default_mode = src.get('defaultMode')
            default_mode = int(default_mode) if default_mode is not None else 0o444
            d = self.tmpdir(name)
            items = src.get('items')
            entries: list[tuple[str, str, int]] = []
            if items:
                for item in items:
                    if item.get('key') not in data:
                        if src.get('optional'):
                            continue
                        raise ConfigError(f"couldn't find key {item.get('key')} in {kind} {self.namespace}/{obj_name}")
                    mode = item.get('mode')
                    entries.append((item.get('path') or item['key'], item['key'], int(mode) if mode is not None else default_mode))
            else:
                entries = [(k, k, default_mode) for k in data]
            for path, key, mode in entries:
                path = path.lstrip('/')
                if '..' in path.split('/'):
                    raise ConfigError(f'bad path {path!r}')
                full = os.path.join(d, path)
                os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
                with open(full, 'wb') as f:
                    f.write(data[key].encode('utf-8', 'surrogateescape'))
                os.chmod(full, mode & 0o7777)
            return ('bind-ro', d)
        if 'persistentVolumeClaim' in vol:
            claim = (vol['persistentVolumeClaim'] or {}).get('claimName') or ''
            if await self.api.get_or_none('v1/persistentvolumeclaims', self.namespace, claim) is None:
                raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
            volume = f'kmock-{self.namespace}-{claim}'
            await self.kubelet.ensure_volume(volume)
            ro = bool((vol['persistentVolumeClaim'] or {}).get('readOnly'))
            return ('volume-ro' if ro else 'volume', volume)
        if 'emptyDir' in vol:
            d = self.tmpdir(name)
            os.chmod(d, 0o777)
            return ('bind', d)
        if 'hostPath' in vol:
            path = (vol['hostPath'] or {}).get('path') or '/'
            if (vol['hostPath'] or {}).get('type') in ('DirectoryOrCreate',):
                os.makedirs(path, exist_ok=True)
            return ('bind', path)
        raise ConfigError(f'unsupported volume type in {name}')


class ConfigError(Exception):
    pass


def decode_data(obj: dict[str, Any], kind: str) -> dict[str, str]:
    data: dict[str, str] = {}
    if kind == 'secret':
        for k, v in (obj.get('data') or {}).items():
            try:
                data[k] = base64.b64decode(v or '').decode('utf-8', 'surrogateescape')
            except (ValueError, TypeError):
                raise ConfigError(f'secret key {k} is not base64')
        for k, v in (obj.get('stringData') or {}).items():
            data[k] = str(v)
    else:
        for k, v in (obj.get('data') or {}).items():
            data[k] = str(v)
        for k, v in (obj.get('binaryData') or {}).items():
            data[k] = base64.b64decode(v or '').decode('utf-8', 'surrogateescape')
    return data


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion ($$ escapes; unknown references stay as they are)."""
    def repl(m: re.Match) -> str:
        if m.group(0) == '$$':
            return '$'
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return re.sub(r'\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)', repl, text)


class Kubelet:
    def __init__(self, api: Api, backoff_max: float, keep_volumes: bool):
        self.api = api
        self.backoff_max = backoff_max
        self.keep_volumes = keep_volumes
        self.runners: dict[tuple[str, str], PodRunner] = {}
        self.teardowns: dict[tuple[str, str], asyncio.Task] = {}
        self.teardown_owner: dict[tuple[str, str], str | None] = {}   # pod key → owner deployment name
        self.tmproot = tempfile.mkdtemp(prefix=f'kmock-emulator-{os.getpid()}-')
        os.chmod(self.tmproot, 0o755)
        self.volumes_lock = asyncio.Lock()
        self.volume_removals: dict[str, asyncio.Task] = {}
        self.controller: 'DeploymentController | None' = None
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- pods -------------------------------------------------------------------

    def pod_event(self, type_: str, pod: dict[str, Any]) -> None:
        key = key_of(pod)
        if type_ in ('ADDED', 'MODIFIED') and meta(pod).get('deletionTimestamp'):
            self.pod_gone(key)      # graceful deletion (finalizers): stop it now
        elif type_ in ('ADDED', 'MODIFIED'):
            runner = self.runners.get(key)
            if runner is None:
                runner = PodRunner(self, pod)
                self.runners[key] = runner
                runner.task = runner.spawn(runner.run())
            else:
                runner.pod = pod
        elif type_ == 'DELETED':
            self.pod_gone(key)

    def pod_gone(self, key: tuple[str, str]) -> None:
        runner = self.runners.pop(key, None)
        if runner is None:
            return
        owner = owner_deployment(runner.pod)
        self.teardown_owner[key] = owner
        previous = self.teardowns.get(key)

        async def go() -> None:
            if previous is not None and not previous.done():
                await asyncio.shield(previous)
            await runner.teardown()

        task = self.spawn(go())
        self.teardowns[key] = task

        def done(t: asyncio.Task) -> None:
            if self.teardowns.get(key) is t:
                del self.teardowns[key]
                self.teardown_owner.pop(key, None)
            if owner and self.controller is not None:
                self.controller.kick((key[0], owner))
        task.add_done_callback(done)

    async def sync_pods(self, items: list[dict[str, Any]]) -> None:
        present = {key_of(p) for p in items}
        for key in list(self.runners):
            if key not in present:
                self.pod_gone(key)
        for pod in items:
            self.pod_event('ADDED', pod)

    def terminating_for(self, namespace: str, deployment: str) -> int:
        return sum(1 for key, owner in self.teardown_owner.items()
                   if key[0] == namespace and owner == deployment and key in self.teardowns)

    # -- containers -------------------------------------------------------------

    async def monitor(self) -> None:
        """Polls docker for our containers' states and hands exits to the runners."""
        pid = os.getpid()
        last_error: str | None = None
        while True:
            try:
                out = await docker('ps', '-a', '--no-trunc', '--filter', f'label={EMULATOR_LABEL}={pid}',
                                   '--format', '{{.ID}}\t{{.State}}\t{{.Label "' + POD_LABEL + '"}}', timeout=30)
                seen: dict[str, str] = {}
                for line in out.splitlines():
                    parts = line.split('\t')
                    if len(parts) < 3:
                        continue
                    cid, state, podref = parts[0], parts[1], parts[2]
                    seen[cid] = state
                    ns, _, name = podref.partition('/')
                    runner = self.runners.get((ns, name))
                    if runner is None or runner.deleted.is_set() or runner.container_id != cid:
                        continue
                    if runner.state == 'running' and state in ('exited', 'dead'):
                        runner.state = 'exiting'
                        runner.spawn(runner.on_exit())
                for runner in list(self.runners.values()):
                    if runner.state == 'running' and runner.container_id and runner.container_id not in seen \
                            and not runner.deleted.is_set():
                        runner.log(logging.WARNING, 'container %s vanished', runner.container_id[:12])
                        runner.state = 'exiting'
                        runner.spawn(runner.on_exit(vanished=True))
            except asyncio.CancelledError:
                raise
                last_error = None
            except Exception as exc:
                if str(exc) != last_error:
                    last_error = str(exc)
                    log.warning('monitor: %s', exc)
            await asyncio.sleep(0.25)

    # -- volumes ----------------------------------------------------------------

    async def ensure_volume(self, volume: str) -> None:
        async with self.volumes_lock:
            removal = self.volume_removals.pop(volume, None)
            if removal is not None:
                removal.cancel()
            if await docker_inspect('volume', volume) is None:
                log.info('creating volume %s', volume)
                await docker('volume', 'create', '--label', f'{EMULATOR_LABEL}={os.getpid()}', volume)

    def claim_deleted(self, namespace: str, claim: str) -> None:
        """Reclaim policy Delete: remove the docker volume once no container uses it."""
        volume = f'kmock-{namespace}-{claim}'
        if volume in self.volume_removals:
            return

        async def go() -> None:
            for _ in range(1200):
                if await docker_inspect('volume', volume) is None:
                    return
                try:
                    await docker('volume', 'rm', volume)
                    log.info('removed volume %s (its claim was deleted)', volume)
                    return
                except DockerError as exc:
                    if 'no such volume' in exc.stderr.lower():
                        return
                await asyncio.sleep(0.5)
            log.warning('gave up removing volume %s', volume)

        task = self.spawn(go())
        self.volume_removals[volume] = task
        task.add_done_callback(lambda t: self.volume_removals.pop(volume, None) if self.volume_removals.get(volume) is t else None)

    # -- start & end ------------------------------------------------------------

    async def remove_stale(self) -> None:
        """Containers/volumes left by emulators that died without cleaning up."""
        try:
            out = await docker('ps', '-a', '--filter', f'label={EMULATOR_LABEL}',
                               '--format', '{{.ID}}\t{{.Label "' + EMULATOR_LABEL + '"}}')
            stale = [cid for cid, _, owner in (l.partition('\t') for l in out.splitlines())
                     if not owner.isdigit() or not pid_alive(int(owner))]
            if stale:
                log.info('removing %d stale containers', len(stale))
                await docker('rm', '-f', *stale, check=False)
        except Exception as exc:
            log.warning('stale cleanup: %s', exc)

    async def cleanup(self) -> None:
        tasks = list(self.tasks)
        for runner in self.runners.values():
            runner.deleted.set()
            tasks += list(runner.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pid = os.getpid()
        try:
            out = await docker('ps', '-aq', '--no-trunc', '--filter', f'label={EMULATOR_LABEL}={pid}', timeout=60)
            ids = out.split()
            if ids:
                log.info('removing %d containers', len(ids))
                await docker('rm', '-f', *ids, check=False, timeout=120)
        except Exception as exc:
            log.warning('cleanup containers: %s', exc)
        if not self.keep_volumes:
            try:
                out = await docker('volume', 'ls', '-q', '--filter', 'name=kmock-', timeout=60)
                names = []
                for v in out.split():
                    if not v.startswith('kmock-'):
                        continue
                    info = await docker_inspect('volume', v) or {}
                    owner = (info.get('Labels') or {}).get(EMULATOR_LABEL)
                    if owner and owner != str(pid) and owner.isdigit() and pid_alive(int(owner)):
                        continue   # another live emulator's
                    names.append(v)
                if names:
                    log.info('removing volumes %s', ' '.join(names))
                    await docker('volume', 'rm', '-f', *names, check=False, timeout=120)
            except Exception as exc:
                log.warning('cleanup volumes: %s', exc)
        shutil.rmtree(self.tmproot, ignore_errors=True)


def owner_deployment(pod: dict[str, Any]) -> str | None:
    for ref in meta(pod).get('ownerReferences') or []:
        if ref.get('kind') == 'Deployment':
            return ref.get('name')
    return None


# ----------------------------------------------------------------------------------------------
# Deployment controller

def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template or {}, sort_keys=True).encode()).hexdigest()[:10]


def pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get('status') or {}
    if status.get('phase') != 'Running':
        return False
    for cond in status.get('conditions') or []:
        if cond.get('type') == 'Ready':
            return cond.get('status') == 'True'
    return False


class DeploymentController:
    def __init__(self, api: Api, kubelet: Kubelet):
        self.api = api
        self.kubelet = kubelet
        kubelet.controller = self
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.pending_creates: dict[tuple[str, str], dict[str, float]] = {}   # deployment → pod name → when
        self.pending_deletes: dict[tuple[str, str], dict[str, float]] = {}
        self.dirty: dict[tuple[str, str], asyncio.Event] = {}
        self.workers: dict[tuple[str, str], asyncio.Task] = {}
        self.synced_deployments = False
        self.synced_pods = False

    def spawn(self, coro) -> asyncio.Task:
        return self.kubelet.spawn(coro)

    def kick(self, key: tuple[str, str]) -> None:
        if key not in self.deployments:
            # Deleted: still make sure its pods go (one pass).
            if self.synced_deployments:
                self.spawn(self.delete_orphans(key))
            return
        event = self.dirty.setdefault(key, asyncio.Event())
        event.set()
        worker = self.workers.get(key)
        if worker is None or worker.done():
            self.workers[key] = self.spawn(self.worker(key))

    async def worker(self, key: tuple[str, str]) -> None:
        event = self.dirty[key]
        while key in self.deployments:
            await event.wait()
            event.clear()
            if key not in self.deployments:
                break
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception('deployment %s/%s: reconcile failed', *key)
                await asyncio.sleep(0.5)
                event.set()
        self.dirty.pop(key, None)

    async def periodic(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            for key in list(self.deployments):
                self.kick(key)
            if self.synced_deployments and self.synced_pods:
                for pkey, pod in list(self.pods.items()):
                    owner = owner_deployment(pod)
                    if owner and (pkey[0], owner) not in self.deployments:
                        log.info('garbage-collecting pod %s/%s (deployment %s is gone)', pkey[0], pkey[1], owner)
                        self.pods.pop(pkey, None)
                        self.spawn(self.api.delete('v1/pods', pkey[0], pkey[1]))

    # -- events -----------------------------------------------------------------

    async def deployment_event(self, type_: str, dep: dict[str, Any]) -> None:
        key = key_of(dep)
        if type_ == 'DELETED':
            self.deployments.pop(key, None)
            log.info('deployment %s/%s deleted', *key)
            await self.delete_orphans(key)
            return
        self.deployments[key] = dep
        self.kick(key)

    async def sync_deployments(self, items: list[dict[str, Any]]) -> None:
        present = {key_of(d) for d in items}
        for key in list(self.deployments):
            if key not in present:
                await self.deployment_event('DELETED', self.deployments[key])
        for dep in items:
            await self.deployment_event('ADDED', dep)
        self.synced_deployments = True

    def pod_event(self, type_: str, pod: dict[str, Any]) -> None:
        key = key_of(pod)
        owner = owner_deployment(pod)
        if type_ == 'DELETED':
            self.pods.pop(key, None)
            if owner:
                self.pending_deletes.get((key[0], owner), {}).pop(key[1], None)
        else:
            self.pods[key] = pod
            if owner:
                self.pending_creates.get((key[0], owner), {}).pop(key[1], None)
        if owner:
            self.kick((key[0], owner))

    async def sync_pods(self, items: list[dict[str, Any]]) -> None:
        present = {key_of(p) for p in items}
        for key in list(self.pods):
            if key not in present:
                self.pod_event('DELETED', self.pods[key])
        for pod in items:
            self.pod_event('ADDED', pod)
        self.synced_pods = True

    # -- reconciliation ---------------------------------------------------------

    async def delete_orphans(self, key: tuple[str, str]) -> None:
        namespace, name = key
        for pkey, pod in list(self.pods.items()):
            if pkey[0] == namespace and owner_deployment(pod) == name:
                self.pods.pop(pkey, None)
                deletes = self.pending_deletes.setdefault(key, {})
                if pkey[1] in deletes:
                    continue
                deletes[pkey[1]] = asyncio.get_running_loop().time()
                try:
                    if await self.api.delete('v1/pods', pkey[0], pkey[1]):
                        log.info('deleted pod %s/%s of deleted deployment %s', pkey[0], pkey[1], name)
                except Exception as exc:
                    log.warning('delete pod %s/%s: %s', pkey[0], pkey[1], exc)

    def owned_pods(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        namespace, name = key
        clock = asyncio.get_running_loop().time()
        deletes = self.pending_deletes.setdefault(key, {})
        creates = self.pending_creates.setdefault(key, {})
        for pending in (deletes, creates):
            for pname, when in list(pending.items()):
                if clock - when > 30:
                    del pending[pname]
        result = [pod for pkey, pod in self.pods.items()
                  if pkey[0] == namespace and owner_deployment(pod) == name and pkey[1] not in deletes
                  and not meta(pod).get('deletionTimestamp')]
        names = {meta(p).get('name') for p in result}
        for pname in creates:
            if pname not in names:
                result.append({'metadata': {'name': pname, 'namespace': namespace,
                                            'labels': {'pod-template-hash': '?pending'}}, 'pending': True})
        return result

    async def reconcile(self, key: tuple[str, str]) -> None:
        dep = self.deployments.get(key)
        if dep is None:
            return
        namespace, name = key
        spec = dep.get('spec') or {}
        replicas = spec.get('replicas')
        replicas = 1 if replicas is None else max(0, int(replicas))
        template = spec.get('template') or {}
        current_hash = template_hash(template)
        strategy = ((spec.get('strategy') or {}).get('type')) or 'RollingUpdate'

        pods = self.owned_pods(key)
        for p in pods:
            if p.get('pending'):
                p['metadata']['labels']['pod-template-hash'] = current_hash  # ours, just created
        current = [p for p in pods if (meta(p).get('labels') or {}).get('pod-template-hash') == current_hash]
        old = [p for p in pods if p not in current]
        terminating = self.kubelet.terminating_for(namespace, name) + len(self.pending_deletes.get(key, {}))

        if strategy == 'Recreate':
            if old:
                for p in old:
                    await self.delete_pod(key, p)
            elif len(current) > replicas:
                await self.scale_down(key, current, len(current) - replicas)
            elif len(current) < replicas and terminating == 0:
                for _ in range(replicas - len(current)):
                    await self.create_pod(key, dep, template, current_hash)
        else:
            if len(current) > replicas:
                await self.scale_down(key, current, len(current) - replicas)
            elif len(current) < replicas:
                for _ in range(replicas - len(current)):
                    await self.create_pod(key, dep, template, current_hash)
            ready_current = sum(1 for p in current if pod_ready(p))
            if old and (ready_current >= replicas or replicas == 0):
                for p in old:
                    await self.delete_pod(key, p)

        await self.update_status(key, dep, replicas, current_hash)

    async def scale_down(self, key: tuple[str, str], pods: list[dict[str, Any]], count: int) -> None:
        # Not-ready first, then the newest.
        def order(p: dict[str, Any]) -> tuple[int, str]:
            return (1 if pod_ready(p) else 0, '~' if p.get('pending') else meta(p).get('creationTimestamp') or '')
        victims = sorted(pods, key=order)
        victims = [p for p in victims if not p.get('pending')][:count] or victims[:0]
        # Newest first among equals.
        for p in victims:
            await self.delete_pod(key, p)

    async def delete_pod(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        pname = meta(pod).get('name')
        if not pname or pod.get('pending'):
            return
        self.pending_deletes.setdefault(key, {})[pname] = asyncio.get_running_loop().time()
        log.info('deployment %s/%s: deleting pod %s', key[0], key[1], pname)
        if not await self.api.delete('v1/pods', key[0], pname):
            self.pending_deletes[key].pop(pname, None)
            self.pods.pop((key[0], pname), None)

    async def create_pod(self, key: tuple[str, str], dep: dict[str, Any], template: dict[str, Any], h: str) -> None:
        namespace, name = key
        tmeta = template.get('metadata') or {}
        labels = dict(tmeta.get('labels') or {})
        labels['pod-template-hash'] = h
        for _ in range(5):
            pname = f'{name}-{h}-' + ''.join(random.choice(NAME_ALPHABET) for _ in range(5))
            if (namespace, pname) not in self.pods:
                break
        spec = json.loads(json.dumps(template.get('spec') or {}))
        spec.setdefault('restartPolicy', 'Always')
        spec.setdefault('terminationGracePeriodSeconds', 30)
        body = {
            'apiVersion': 'v1', 'kind': 'Pod',
            'metadata': {
                'name': pname, 'namespace': namespace, 'labels': labels,
                'annotations': dict(tmeta.get('annotations') or {}),
                'uid': str(uuid.uuid4()), 'creationTimestamp': now(),
                'generateName': f'{name}-{h}-',
                'ownerReferences': [{
                    'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': name,
                    'uid': meta(dep).get('uid') or '', 'controller': True, 'blockOwnerDeletion': True,
                }],
            },
            'spec': spec,
            'status': {'phase': 'Pending'},
        }
        if not body['metadata']['annotations']:
            del body['metadata']['annotations']
        self.pending_creates.setdefault(key, {})[pname] = asyncio.get_running_loop().time()
        log.info('deployment %s/%s: creating pod %s', namespace, name, pname)
        try:
            await self.api.create('v1/pods', namespace, body)
        except Exception:
            self.pending_creates[key].pop(pname, None)
            raise

    async def update_status(self, key: tuple[str, str], dep: dict[str, Any], replicas: int, h: str) -> None:
        pods = [p for p in self.owned_pods(key) if not p.get('pending')]
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(1 for p in pods if (meta(p).get('labels') or {}).get('pod-template-hash') == h)
        generation = meta(dep).get('generation')
        old = dep.get('status') or {}
        status: dict[str, Any] = {
            'observedGeneration': generation if isinstance(generation, int) else 1,
            'replicas': len(pods),
            'updatedReplicas': updated,
            'readyReplicas': ready,
            'availableReplicas': ready,
            'unavailableReplicas': max(0, replicas - ready),
        }
        old_conditions = {c.get('type'): c for c in old.get('conditions') or []}

        def condition(type_: str, value: bool, reason: str, message: str) -> dict[str, Any]:
            prev = old_conditions.get(type_)
            text = 'True' if value else 'False'
            changed = prev is None or prev.get('status') != text
            return {'type': type_, 'status': text, 'reason': reason, 'message': message,
                    'lastUpdateTime': now() if changed or prev.get('reason') != reason else prev.get('lastUpdateTime'),
                    'lastTransitionTime': now() if changed else prev.get('lastTransitionTime')}

        available = ready >= replicas
        complete = updated == replicas and len(pods) == replicas and available
        status['conditions'] = [
            condition('Available', available,
                      'MinimumReplicasAvailable' if available else 'MinimumReplicasUnavailable',
                      'Deployment has minimum availability.' if available else 'Deployment does not have minimum availability.'),
            condition('Progressing', True, 'NewReplicaSetAvailable' if complete else 'ReplicaSetUpdated',
                      f'ReplicaSet "{key[1]}-{h}" has successfully progressed.' if complete
                      else f'ReplicaSet "{key[1]}-{h}" is progressing.'),
        ]
        comparable = {k: v for k, v in status.items() if k != 'conditions'}
        old_comparable = {k: old.get(k) for k in comparable}
        old_conds = [(c.get('type'), c.get('status'), c.get('reason')) for c in old.get('conditions') or []]
        new_conds = [(c['type'], c['status'], c['reason']) for c in status['conditions']]
        if comparable == old_comparable and old_conds == new_conds:
            return
        await self.api.patch('apps/v1/deployments', key[0], key[1], {'status': status}, sub='status')


# ----------------------------------------------------------------------------------------------
# Claims: Bound on creation; the docker volume goes with the claim.

class ClaimController:
    def __init__(self, api: Api, kubelet: Kubelet):
        self.api = api
        self.kubelet = kubelet
        self.claims: set[tuple[str, str]] = set()

    async def event(self, type_: str, pvc: dict[str, Any]) -> None:
        key = key_of(pvc)
        if type_ == 'DELETED':
            self.claims.discard(key)
            log.info('claim %s/%s deleted', *key)
            self.kubelet.claim_deleted(*key)
            return
        self.claims.add(key)
        status = pvc.get('status') or {}
        if status.get('phase') != 'Bound':
            spec = pvc.get('spec') or {}
            storage = ((spec.get('resources') or {}).get('requests') or {}).get('storage')
            patch: dict[str, Any] = {'phase': 'Bound', 'accessModes': spec.get('accessModes') or ['ReadWriteOnce']}
            if storage is not None:
                patch['capacity'] = {'storage': storage}
            await self.api.patch('v1/persistentvolumeclaims', key[0], key[1], {'status': patch}, sub='status')

    async def sync(self, items: list[dict[str, Any]]) -> None:
        present = {key_of(p) for p in items}
        for key in list(self.claims):
            if key not in present:
                await self.event('DELETED', {'metadata': {'namespace': key[0], 'name': key[1]}})


# ----------------------------------------------------------------------------------------------

async def main() -> int:
    parser = argparse.ArgumentParser(description='kmock Kubernetes emulator for the KubernetesProvider tests')
    parser.add_argument('--port', type=int, default=0, help='port to listen on (0: any free port)')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--kubelet', action='store_true',
                        help='also run a deployment controller, scheduler and kubelet against DOCKER_HOST')
    parser.add_argument('--backoff-max', type=float, default=5.0,
                        help='cap (seconds) of the restart back-off (Kubernetes: 300)')
    parser.add_argument('--keep-volumes', action='store_true', help='do not remove kmock-* docker volumes on exit')
    parser.add_argument('--exit-with-parent', action=argparse.BooleanOptionalAction, default=True,
                        help='exit (cleaning up) when the parent process goes (default: on)')
    parser.add_argument('--verbose', '-v', action='store_true')
    opts = parser.parse_args()

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if opts.verbose else logging.INFO,
                        format='%(asctime)s kube_emulator[%(process)d] %(levelname)s %(message)s')
    logging.getLogger('aiohttp.access').setLevel(logging.DEBUG if opts.verbose else logging.WARNING)

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    # A parent may start it with these signals blocked (the mask is inherited): unblock them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    async with Emulator() as k, kmock.Server(k, host=opts.host, port=opts.port or None) as s:
        for r in RESOURCES:
            k.resources[r] = {}
        sys.stdout.write(f'listening {s.port}\n')
        sys.stdout.flush()
        log.info('listening on http://%s:%d (kubelet: %s, DOCKER_HOST=%s)', opts.host, s.port, opts.kubelet,
                 os.environ.get('DOCKER_HOST', ''))

        tasks: list[asyncio.Task] = []
        api: Api | None = None
        kubelet: Kubelet | None = None
        if opts.exit_with_parent:
            parent = os.getppid()

            async def watch_parent() -> None:
                while os.getppid() == parent:
                    await asyncio.sleep(1.0)
                log.info('parent process went; exiting')
                stopping.set()
            tasks.append(asyncio.ensure_future(watch_parent()))

        if opts.kubelet:
            api = Api(f'http://127.0.0.1:{s.port}' if opts.host in ('0.0.0.0', '::', '') else str(s.url))
            await api.start()
            kubelet = Kubelet(api, opts.backoff_max, opts.keep_volumes)
            await kubelet.remove_stale()
            controller = DeploymentController(api, kubelet)
            claims = ClaimController(api, kubelet)

            async def on_pod(type_: str, pod: dict[str, Any]) -> None:
                try:
                    kubelet.pod_event(type_, pod)     # first: a deletion registers its teardown
                finally:
                    controller.pod_event(type_, pod)

            async def on_pod_sync(items: list[dict[str, Any]]) -> None:
                await kubelet.sync_pods(items)
                await controller.sync_pods(items)

            tasks += [
                asyncio.ensure_future(kubelet.monitor()),
                asyncio.ensure_future(controller.periodic()),
                asyncio.ensure_future(api.watch('v1/persistentvolumeclaims', claims.event, claims.sync, stopping)),
                asyncio.ensure_future(api.watch('v1/pods', on_pod, on_pod_sync, stopping)),
                asyncio.ensure_future(api.watch('apps/v1/deployments', controller.deployment_event,
                                                controller.sync_deployments, stopping)),
            ]

        await stopping.wait()
        log.info('stopping')
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if kubelet is not None:
            await kubelet.cleanup()
        if api is not None:
            await api.close()
        # The server's own shutdown waits up to 60 s for clients' open connections (a watch,
        # a pooled keep-alive); everything of ours is cleaned up, so leave at once.
        log.info('stopped')
        logging.shutdown()
        os._exit(0)
    log.info('stopped')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(0)
