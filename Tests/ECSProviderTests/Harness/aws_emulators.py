#!/usr/bin/env python3
"""AWS emulators for the ECS (Fargate) provider tests.

Usage::

    python3 aws_emulators.py [serve] [--docker-host unix:///path/docker.sock] [--auth]
                             [--task-network host|docker] [--region us-east-1]
                             [--ready-timeout SECONDS] [--no-exit-with-parent] [--verbose]
    python3 aws_emulators.py interrupt --ecs URL --task ARN [--kill-after SECONDS]

``serve`` (the default) starts PyPI's ``ministack`` on a free 127.0.0.1 port, in a child
process, waits until it answers and prints exactly one line on stdout::

    listening ecs=<url> ec2=<url> iam=<url> logs=<url> [access_key_id=<id> secret_access_key=<secret>]

(the four URLs are the same: ministack serves ECS, EC2, IAM and CloudWatch Logs on one port and
routes by X-Amz-Target, then by the SigV4 credential scope). Everything else goes to stderr. It
runs until SIGTERM/SIGINT (or until its parent goes, unless ``--no-exit-with-parent``), then
stops the child by its pid (SIGTERM, SIGKILL after 15 s), removes the ECS task containers that
the child left on the Docker daemon, and exits 0.

Credentials. Without ``--auth`` any access key/secret is accepted. With ``--auth`` ministack
runs with AUTH=true: an unsigned request is refused (MissingAuthenticationTokenException), an
unknown access key too (UnrecognizedClientException), and a key created through IAM
CreateAccessKey has its SigV4 signature (InvalidSignatureException / AuthFailure) and its clock
skew (5 minutes) checked and its IAM policies enforced. The root key ``test`` (and any 12-digit
account id as key) is accepted WITHOUT any signature check, so ``--auth`` creates an IAM user
``harness-admin`` with an allow-all inline policy and an access key, and appends its id and secret
to the ``listening`` line: sign with those to have the signature verified.

Harness changes to ministack (monkeypatched in the child, nothing installed is modified):

* ``--task-network host`` (default): a task whose task definition has ``networkMode`` ``awsvpc``
  runs its containers with ``--network host`` (a private dockerd started with ``--bridge=none``
  gives a container no address at all), its containers get ``AWS_ENDPOINT_URL`` etc. pointing at
  ``127.0.0.1``, and the task reports an ``ElasticNetworkInterface`` attachment whose
  ``privateIPv4Address`` is ``127.0.0.1`` (plus ``subnetId`` when RunTask named one,
  ``networkInterfaceId``, ``macAddress``, ``privateDnsName``) and ``containers[].networkInterfaces``.
  ``--task-network docker`` keeps ministack's own behaviour (the daemon's default network).
* A Fargate Spot interruption: ``POST <ecs>/_harness/ecs/interrupt`` with the JSON body
  ``{"task": "<task ARN>", "killAfter": <seconds, optional>}`` (or the ``interrupt`` command
  above). The task (which must be RUNNING) at once gets ``desiredStatus`` STOPPED, ``stopCode``
  ``SpotInterruption``, ``stoppedReason`` "Your Spot Task was interrupted." and ``stoppingAt``
  while ``lastStatus`` stays RUNNING; its containers get SIGTERM; those still running after
  ``killAfter`` seconds (default: the container definition's ``stopTimeout``, else 30) get
  SIGKILL. When they have exited the task becomes STOPPED with the containers' exit codes, and
  keeps the SpotInterruption stop code and reason (a later StopTask too). Answers 200 with
  ``{"task": {...}}`` as DescribeTasks shows it, 404 for an unknown task, 409 for a task that is
  not RUNNING.

A test finds a task's containers through their Docker labels: ``com.amazonaws.ecs.task-arn``
(the task ARN), ``com.amazonaws.ecs.container-name``, ``com.amazonaws.ecs.cluster``,
``ministack=ecs``; their names are ``ministack-ecs-<first 8 characters of the task id>-<container
name>``.

``POST <url>/_ministack/reset`` wipes every service's state and removes the task containers; it
also removes the ``--auth`` admin user and key (sign with ``test``/``test`` after it, or restart).

ministack 1.5.33 behaviours a client must tolerate (checked against this harness):
StopTask blocks for up to 5 s (``docker stop -t 5``, whatever ``stopTimeout`` says) and reports
exit code 0; DeleteCluster succeeds with running tasks (which go on running and listing); RunTask
creates a missing cluster, accepts ``count`` > 10 and inactive task definitions, ignores
``overrides.cpu/memory`` and sets no Docker CPU/memory limits; DeleteTaskDefinitions only marks
DELETE_IN_PROGRESS; stopped tasks are listed forever; ``stopCode``/``stoppedReason`` are "" on a
live task; timestamps are integer epoch seconds; under ``--auth`` the credentials that a task's
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` hands out are not accepted back.

Needs: ``pip install ministack docker`` (boto3 is not needed; botocore comes with ministack).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

CHILD = '_ministack'
# imds serves the task role credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI), ecs-metadata the
# task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4) that ministack gives every task.
SERVICES = 'ecs,ec2,iam,logs,secretsmanager,ssm,sts,imds,ecs-metadata'
SPOT_REASON = 'Your Spot Task was interrupted.'


def log(msg: str) -> None:
    sys.stderr.write(f'aws_emulators: {msg}\n')
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The child: ministack in-process, with the harness's patches.
# ---------------------------------------------------------------------------------------------

def set_parent_death_signal() -> None:
    """Linux: the child gets SIGTERM when the launcher dies, even by SIGKILL."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def run_child() -> None:
    set_parent_death_signal()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    task_network = os.environ.get('HARNESS_TASK_NETWORK', 'host')

    import ministack.app as msapp
    from ministack.services import ecs
    from ministack.core.concurrency import resource_lock
    from ministack.core.responses import new_uuid, request_scope

    # --- awsvpc tasks on the host network, with an ENI attachment at 127.0.0.1 --------------
    if task_network == 'host':
        orig_build_run_kwargs = ecs._build_run_kwargs
        orig_register_metadata = ecs._register_metadata
        orig_container_ip = ecs._container_ip
        orig_record_task_ip = ecs._record_task_ip

        def _build_run_kwargs(cdef, td, env, port_bindings, ecs_network, host_mode, *rest):
            if td.get('networkMode') == 'awsvpc':
                host_mode = True
            return orig_build_run_kwargs(cdef, td, env, port_bindings, ecs_network, host_mode, *rest)

        def _register_metadata(task_arn, cluster_arn, td, cdef, launch_type, env, host_mode,
                               ministack_net_ip):
            if td.get('networkMode') == 'awsvpc':
                host_mode = True
            return orig_register_metadata(task_arn, cluster_arn, td, cdef, launch_type, env,
                                          host_mode, ministack_net_ip)

        def _container_ip(container, ecs_network):
            try:
                container.reload()
                if container.attrs['HostConfig'].get('NetworkMode') == 'host':
                    return '127.0.0.1'
            except Exception:
                pass
            return orig_container_ip(container, ecs_network)

        def _record_task_ip(task, container, ecs_network):
            orig_record_task_ip(task, container, ecs_network)
            with resource_lock('ecs-task', task.get('taskArn', '')):
                for att in task.get('attachments') or []:
                    if att.get('type') != 'ElasticNetworkInterface':
                        continue
                    details = att.setdefault('details', [])
                    names = {d.get('name') for d in details}
                    ip = next((d['value'] for d in details if d.get('name') == 'privateIPv4Address'), None)
                    suffix = new_uuid().replace('-', '')
                    for name, value in (('networkInterfaceId', f'eni-{suffix[:17]}'),
                                        ('macAddress', ':'.join(['02'] + [suffix[i:i + 2] for i in range(0, 10, 2)])),
                                        ('privateDnsName', 'localhost')):
                        if name not in names:
                            details.append({'name': name, 'value': value})
                    for c in task.get('containers') or []:
                        if not c.get('networkInterfaces') and ip:
                            c['networkInterfaces'] = [{'attachmentId': att['id'], 'privateIpv4Address': ip}]

        ecs._build_run_kwargs = _build_run_kwargs
        ecs._register_metadata = _register_metadata
        ecs._container_ip = _container_ip
        ecs._record_task_ip = _record_task_ip

    # --- Spot interruption --------------------------------------------------------------------
    orig_task_is_active = ecs._task_is_active
    orig_mark_task_stopped = ecs._mark_task_stopped

    def _task_is_active(task_arn, task):
        if task.get('_harness_interrupt'):
            # Draining after an interruption: desiredStatus is already STOPPED, but the task
            # is alive until its containers exit (the lifecycle watcher goes on watching).
            return (ecs._tasks.get(task_arn) is task and not task.get('_ecs_resetting')
                    and task.get('lastStatus') != 'STOPPED')
        return orig_task_is_active(task_arn, task)

    def _mark_task_stopped(task_arn, task, reason, stop_code, exit_code=None):
        if task.get('_harness_interrupt'):
            if stop_code == 'UserInitiated':
                exit_code = None  # StopTask's made-up 0; the containers' own codes are kept
            reason, stop_code = SPOT_REASON, 'SpotInterruption'
            with resource_lock('ecs-task', task_arn):
                if task.get('desiredStatus') == 'STOPPED' and task.get('lastStatus') != 'STOPPED':
                    # The desiredStatus flip was counted when the interruption came.
                    task['version'] = int(task.get('version') or 2) - 1
        return orig_mark_task_stopped(task_arn, task, reason, stop_code, exit_code)

    ecs._task_is_active = _task_is_active
    ecs._mark_task_stopped = _mark_task_stopped

    def interrupt(body: dict) -> tuple[int, dict]:
        arn = body.get('task') or ''
        parts = arn.split(':')
        if len(parts) < 6 or not parts[5].startswith('task/'):
            return 400, {'message': 'task must be a task ARN'}
        region, account = parts[3], parts[4]
        task = ecs._tasks.get_scoped(account, region, arn)
        if task is None:
            return 404, {'message': f'no task {arn}'}
        with resource_lock('ecs-task', arn):
            if task.get('lastStatus') != 'RUNNING' or task.get('desiredStatus') == 'STOPPED':
                return 409, {'message': f"task is {task.get('lastStatus')} "
                                        f"(desired {task.get('desiredStatus')}), not RUNNING"}
            task['_harness_interrupt'] = True
            ecs._bump_task_version(task)
            task['desiredStatus'] = 'STOPPED'
            task['stopCode'] = 'SpotInterruption'
            task['stoppedReason'] = SPOT_REASON
            task['stoppingAt'] = ecs._iso()
            docker_ids = list(task.get('_docker_ids') or [])
            snapshot = ecs._sanitize(task)
        kill_after = body.get('killAfter')
        if kill_after is None:
            kill_after = 30
            try:
                td_key = task['taskDefinitionArn'].split('task-definition/', 1)[1]
                td = ecs._task_defs.get_scoped(account, region, td_key) or {}
                timeouts = [c['stopTimeout'] for c in td.get('containerDefinitions', [])
                            if c.get('stopTimeout') is not None]
                if timeouts:
                    kill_after = max(timeouts)
            except Exception:
                pass
        client = ecs._get_docker()

        def signal_all(sig: str) -> None:
            for cid in docker_ids:
                try:
                    client.containers.get(cid).kill(signal=sig)
                except Exception as exc:  # already gone
                    log(f'{sig} to {cid[:12]}: {exc}')

        signal_all('SIGTERM')

        def later() -> None:
            deadline = time.monotonic() + float(kill_after)
            while time.monotonic() < deadline:
                if task.get('lastStatus') == 'STOPPED':
                    return
                time.sleep(0.1)
            if task.get('lastStatus') != 'STOPPED':
                signal_all('SIGKILL')
            # The lifecycle watcher notices the exit; make sure someone looks even if it died.
            with request_scope(account, region):
                for _ in range(100):
                    if task.get('lastStatus') == 'STOPPED':
                        return
                    ecs._maybe_mark_stopped(task)
                    time.sleep(0.1)

        threading.Thread(target=later, daemon=True, name='harness-spot-kill').start()
        return 200, {'task': ecs._normalize_ecs_timestamps(snapshot)}

    orig_app = msapp.app

    async def app(scope, receive, send):
        if scope.get('type') == 'http' and scope.get('path', '').startswith('/_harness/'):
            import asyncio
            body = b''
            while True:
                message = await receive()
                body += message.get('body', b'')
                if not message.get('more_body'):
                    break
            if scope['path'] == '/_harness/ecs/interrupt' and scope.get('method') == 'POST':
                try:
                    status, payload = await asyncio.to_thread(interrupt, json.loads(body or b'{}'))
                except Exception as exc:
                    status, payload = 500, {'message': repr(exc)}
            else:
                status, payload = 404, {'message': 'unknown harness endpoint'}
            data = json.dumps(payload).encode()
            await send({'type': 'http.response.start', 'status': status,
                        'headers': [(b'content-type', b'application/json'),
                                    (b'content-length', str(len(data)).encode())]})
            await send({'type': 'http.response.body', 'body': data})
            return
        await orig_app(scope, receive, send)

    msapp.app = app  # main() serves the module's `app`, looked up when it runs
    sys.argv = ['ministack']
    msapp.main()


# ---------------------------------------------------------------------------------------------
# The launcher.
# ---------------------------------------------------------------------------------------------

def child_env(opts, port: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('AWS_', 'MINISTACK_', 'LOCALSTACK_'))
           and k not in ('SERVICES', 'PERSIST_STATE', 'S3_PERSIST', 'GATEWAY_PORT', 'EDGE_PORT')}
    env.update({
        'BIND_HOST': '127.0.0.1',
        'GATEWAY_PORT': str(port),
        'MINISTACK_HOST': '127.0.0.1',
        'MINISTACK_REGION': opts.region,
        'SERVICES': SERVICES,
        'AUTH': 'true' if opts.auth else 'false',
        'IOT_MTLS_ENABLED': '0',   # else it listens on 0.0.0.0:8883
        'SFTP_ENABLED': '0',
        'PERSIST_STATE': '0',
        # The root caller: key `test`, secret `test`, never signature-checked (see the docstring).
        'AWS_ACCESS_KEY_ID': 'test',
        'AWS_SECRET_ACCESS_KEY': 'test',
        'LOG_LEVEL': 'DEBUG' if opts.verbose else 'WARNING',
        'HARNESS_TASK_NETWORK': opts.task_network,
        'PYTHONUNBUFFERED': '1',
    })
    if opts.docker_host:
        env['DOCKER_HOST'] = opts.docker_host
    return env


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + '/_ministack/health', timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def signed_call(url: str, region: str, service: str, params: dict) -> bytes:
    """A form-encoded (query protocol) call signed as the root caller."""
    from urllib.parse import urlencode
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = urlencode(params)
    req = AWSRequest(method='POST', url=url + '/', data=body,
                     headers={'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8'})
    SigV4Auth(Credentials('test', 'test'), service, region).add_auth(req)
    p = req.prepare()
    r = urllib.request.Request(p.url, data=p.body.encode() if isinstance(p.body, str) else p.body,
                               headers=dict(p.headers), method='POST')
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.read()


def bootstrap_admin(url: str, region: str) -> tuple[str, str]:
    import re
    iam = lambda **p: signed_call(url, region, 'iam', {'Version': '2010-05-08', **p})  # noqa: E731
    iam(Action='CreateUser', UserName='harness-admin')
    iam(Action='PutUserPolicy', UserName='harness-admin', PolicyName='allow-all',
        PolicyDocument=json.dumps({'Version': '2012-10-17',
                                   'Statement': [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]}))
    out = iam(Action='CreateAccessKey', UserName='harness-admin').decode()
    key = re.search(r'<AccessKeyId>([^<]+)</AccessKeyId>', out).group(1)
    secret = re.search(r'<SecretAccessKey>([^<]+)</SecretAccessKey>', out).group(1)
    return key, secret


def sweep_containers(docker_host: str | None, port: int) -> None:
    """Remove task containers a dead child left behind (its own shutdown removes them too)."""
    instance = f'{socket.gethostname()}:{port}'  # ministack's container_reaper.instance_id()
    cmd = ['docker'] + (['-H', docker_host] if docker_host else [])
    try:
        ids = subprocess.run(cmd + ['ps', '-aq', '--filter', f'label=ministack.instance={instance}'],
                             capture_output=True, text=True, timeout=30).stdout.split()
        if ids:
            subprocess.run(cmd + ['rm', '-f', '-v'] + ids, capture_output=True, timeout=60)
            log(f'removed {len(ids)} leftover container(s)')
    except Exception as exc:
        log(f'container sweep failed: {exc}')


def serve(opts) -> int:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()

    proc = port = None
    for _attempt in range(3):
        port = free_port()
        url = f'http://127.0.0.1:{port}'
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), CHILD],
                                env=child_env(opts, port), stdin=subprocess.DEVNULL,
                                stdout=sys.stderr, stderr=sys.stderr)
        if wait_ready(url, proc, opts.ready_timeout):
            break
        log(f'ministack did not come up on port {port} (exit status {proc.poll()})')
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if stop.is_set():
            return 1
    else:
        return 1

    creds = ''
    try:
        if opts.auth:
            key, secret = bootstrap_admin(url, opts.region)
            creds = f' access_key_id={key} secret_access_key={secret}'
    except Exception as exc:
        log(f'creating the IAM admin user failed: {exc}')
        proc.terminate()
        proc.wait()
        return 1

    sys.stdout.write(f'listening ecs={url} ec2={url} iam={url} logs={url}{creds}\n')
    sys.stdout.flush()
    log(f'ministack pid {proc.pid} on {url} (auth={opts.auth}, task network={opts.task_network}, '
        f'DOCKER_HOST={opts.docker_host or os.environ.get("DOCKER_HOST", "")})')

    while not stop.wait(0.2):
        if proc.poll() is not None:
            log(f'ministack exited (status {proc.returncode})')
            break
        if opts.exit_with_parent and os.getppid() != parent:
            log('parent process went; exiting')
            break

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    sweep_containers(opts.docker_host or os.environ.get('DOCKER_HOST'), port)
    return 0


def interrupt_cli(opts) -> int:
    body = {'task': opts.task}
    if opts.kill_after is not None:
        body['killAfter'] = opts.kill_after
    req = urllib.request.Request(opts.ecs.rstrip('/') + '/_harness/ecs/interrupt',
                                 data=json.dumps(body).encode(), method='POST',
                                 headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            sys.stdout.write(r.read().decode() + '\n')
            return 0
    except urllib.error.HTTPError as e:
        sys.stderr.write(e.read().decode() + '\n')
        return 1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        run_child()
        return 0
    argv = sys.argv[1:]
    if argv[:1] == ['interrupt']:
        p = argparse.ArgumentParser(prog='aws_emulators.py interrupt')
        p.add_argument('--ecs', required=True, help='the ecs=<url> of the listening line')
        p.add_argument('--task', required=True, help='task ARN')
        p.add_argument('--kill-after', type=float, default=None,
                       help="seconds from SIGTERM to SIGKILL (default: the container's stopTimeout, else 30)")
        return interrupt_cli(p.parse_args(argv[1:]))
    if argv[:1] == ['serve']:
        argv = argv[1:]
    p = argparse.ArgumentParser(prog='aws_emulators.py')
    p.add_argument('--docker-host', default=None,
                   help='DOCKER_HOST for the task containers (default: the environment\'s)')
    p.add_argument('--auth', action='store_true', help='AUTH=true, plus an IAM admin user (see above)')
    p.add_argument('--task-network', choices=('host', 'docker'), default='host')
    p.add_argument('--region', default='us-east-1')
    p.add_argument('--ready-timeout', type=float, default=60.0)
    p.add_argument('--exit-with-parent', action=argparse.BooleanOptionalAction, default=True)
    p.add_argument('--verbose', action='store_true')
    return serve(p.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
