#!/usr/bin/env python3
"""AWS emulators for the ECS (Fargate) provider tests.

Usage::

    python3 aws_emulators.py [serve] [--docker-host unix:///path/docker.sock] [--auth] [--moto]
                             [--task-network host|docker] [--region us-east-1]
                             [--ready-timeout SECONDS] [--no-exit-with-parent] [--verbose]
    python3 aws_emulators.py interrupt --ecs URL --task ARN [--kill-after SECONDS]

``serve`` (the default) starts PyPI's ``ministack`` on a free 127.0.0.1 port, in a child
process, waits until it answers and prints exactly one line on stdout::

    listening ecs=<url> ec2=<url> iam=<url> logs=<url> secretsmanager=<url> [access_key_id=<id> secret_access_key=<secret>]

(without ``--moto`` the five URLs are the same: ministack serves ECS, EC2, IAM, CloudWatch Logs
and Secrets Manager on one port and routes by X-Amz-Target, then by the SigV4 credential scope).
Everything else goes to stderr. It runs until SIGTERM/SIGINT (or until its parent goes, unless
``--no-exit-with-parent``), then stops its children by their pids (SIGTERM, SIGKILL after 15 s),
removes the ECS task containers that ministack left on the Docker daemon, and exits 0.

``--moto`` also starts PyPI's ``moto[server]`` (5.2.1, ``moto.server.main``, i.e. ``moto_server
-H 127.0.0.1 -p <free port>``; started first, stopped by its pid like ministack) as a second
child, and EC2, IAM and CloudWatch Logs go to it: ``ec2=``, ``iam=`` and ``logs=`` are moto's URL,
``ecs=`` and ``secretsmanager=`` ministack's. moto runs with ``MOTO_ACCOUNT_ID`` = ministack's
account (``000000000000``, so role ARNs from moto's IAM name the account of ministack's ECS
ARNs) and ``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` (the AWS managed policies, e.g.
``service-role/AmazonECSTaskExecutionRolePolicy``, can be attached). moto has a default VPC
(172.31.0.0/16) with a default subnet in each availability zone of every region (six in
us-east-1). Under ``--auth`` ministack's RegisterTaskDefinition wants ``executionRoleArn`` and
``taskRoleArn`` to name existing roles: with ``--moto`` it asks moto's IAM (GetRole). Task
containers' ``awslogs`` output still goes to ministack's own CloudWatch Logs, which does not
have the log groups made in moto (it is dropped unless ``awslogs-create-group`` is true).
``POST <ec2>/moto-api/reset`` wipes moto's state (and its ``--auth`` user and key).
moto 5.2.1 differs from AWS: a request without an Authorization header gets HTTP 500 (an HTML
page: moto routes by the credential scope); under ``--auth`` CloudWatch Logs refuses a bad
signature or key with HTTP 403 and an XML ``<ErrorResponse>`` body, not JSON.

Credentials. Without ``--auth`` any access key/secret is accepted. With ``--auth`` ministack
runs with AUTH=true: an unsigned request is refused (MissingAuthenticationTokenException), an
unknown access key too (UnrecognizedClientException), and a key created through IAM
CreateAccessKey has its SigV4 signature (InvalidSignatureException / AuthFailure) and its clock
skew (5 minutes) checked and its IAM policies enforced. The root key ``test`` (and any 12-digit
account id as key) is accepted WITHOUT any signature check, so ``--auth`` creates an IAM user
``harness-admin`` with an allow-all inline policy and an access key, and appends its id and secret
to the ``listening`` line: sign with those to have the signature verified.

``--moto --auth``: ONE key, checked by both (ministack does run with AUTH=true). moto is started
with ``INITIAL_NO_AUTH_ACTION_COUNT=3`` and those three unchecked calls, made at once through
moto's IAM, create the user ``harness-admin``, its allow-all inline policy and its access key;
from then on moto checks every request's SigV4 signature and the user's policies (but no clock
skew). A wrong secret: EC2 ``AuthFailure`` (HTTP 401), IAM ``SignatureDoesNotMatch`` (403), Logs
``SignatureDoesNotMatch`` (403, XML); an unknown key, ``test`` included: ``AuthFailure`` (401),
``InvalidClientTokenId`` (403), ``InvalidClientTokenId`` (403, XML). ministack gets the same user
and policy through its IAM and is handed moto's key id and secret through the harness endpoint
``POST <ecs>/_harness/iam/access-key`` (JSON ``{"userName": ..., "accessKeyId": ...,
"secretAccessKey": ...}``; the user must exist; 200, or 400/404), so it checks the same
signatures with the same key. The printed ``access_key_id``/``secret_access_key`` are that key.
ministack still takes the root key ``test`` unchecked; moto does not.

Harness changes to ministack (monkeypatched in the child, nothing installed is modified):

* ``linuxParameters.initProcessEnabled`` in a container definition runs the container with an
  init process as PID 1 (``docker run --init``), as Fargate does; ministack ignores it.

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
It does not touch moto (see ``/moto-api/reset`` above).

ministack 1.5.33 behaviours a client must tolerate (checked against this harness):
StopTask blocks for up to 5 s (``docker stop -t 5``, whatever ``stopTimeout`` says) and reports
exit code 0; DeleteCluster succeeds with running tasks (which go on running and listing); RunTask
creates a missing cluster, accepts ``count`` > 10 and inactive task definitions, ignores
``overrides.cpu/memory`` and sets no Docker CPU/memory limits; DeleteTaskDefinitions only marks
DELETE_IN_PROGRESS; stopped tasks are listed forever; ``stopCode``/``stoppedReason`` are "" on a
live task; timestamps are integer epoch seconds; under ``--auth`` the credentials that a task's
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` hands out are not accepted back.

Needs: ``pip install ministack docker`` (boto3 is not needed; botocore comes with ministack),
and for ``--moto`` ``pip install 'moto[server]'``.
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
MOTO_CHILD = '_moto'
# ministack's default account (MINISTACK_ACCOUNT_ID); moto is given the same one.
ACCOUNT_ID = '000000000000'
ADMIN_USER = 'harness-admin'
ALLOW_ALL = json.dumps({'Version': '2012-10-17',
                        'Statement': [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]})
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

    # --- linuxParameters.initProcessEnabled, as Fargate honours it: an init process is PID 1 -----
    # (ministack ignores it; without it the container's first process is PID 1, and a SIGKILL
    # sent to it from inside the container is ignored, as the conformance kit's step 17 does.)
    init_build_run_kwargs = ecs._build_run_kwargs

    def _build_run_kwargs_with_init(cdef, *rest):
        kwargs = init_build_run_kwargs(cdef, *rest)
        if (cdef.get('linuxParameters') or {}).get('initProcessEnabled'):
            kwargs['init'] = True
        return kwargs

    ecs._build_run_kwargs = _build_run_kwargs_with_init

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

    # --- --moto: roles live in moto's IAM ------------------------------------------------------
    moto_url = os.environ.get('HARNESS_MOTO_URL')
    moto_key: list[tuple[str, str]] = []  # the key given to import_access_key, moto's too

    if moto_url:
        from ministack.core import iam_evaluator

        def validate_role_arn(role_arn: str) -> str | None:
            """Under AUTH, RegisterTaskDefinition etc. want the role to exist: ask moto's IAM."""
            from ministack.app import AUTH
            if not AUTH or not role_arn:
                return None
            parts = role_arn.split(':')
            if len(parts) < 6 or not parts[5].startswith('role/'):
                return f'Invalid role ARN: {role_arn}'
            name = parts[5][5:].rsplit('/', 1)[-1]
            try:
                signed_call(moto_url, os.environ.get('MINISTACK_REGION', 'us-east-1'), 'iam',
                            {'Action': 'GetRole', 'Version': '2010-05-08', 'RoleName': name},
                            moto_key[-1] if moto_key else ('test', 'test'))
            except RuntimeError as exc:
                if 'NoSuchEntity' in str(exc):
                    return f'The role with name {name} cannot be found. (Service: IAM, Status Code: 404)'
                log(f'GetRole {name} in moto: {exc}')
            except Exception as exc:
                log(f'GetRole {name} in moto: {exc}')
            return None

        iam_evaluator.validate_role_arn = validate_role_arn  # imported where it is called

    # --- an access key made elsewhere (moto's IAM), for an existing user ------------------------
    def import_access_key(body: dict) -> tuple[int, dict]:
        from ministack.services import iam
        user, key, secret = body.get('userName'), body.get('accessKeyId'), body.get('secretAccessKey')
        if not (isinstance(user, str) and isinstance(key, str) and isinstance(secret, str)
                and user and key and secret):
            return 400, {'message': 'userName, accessKeyId and secretAccessKey are required'}
        account = os.environ.get('MINISTACK_ACCOUNT_ID', ACCOUNT_ID)
        if not iam._users.contains_scoped(account, None, user):
            return 404, {'message': f'no IAM user {user} in account {account}'}
        iam._access_keys.set_scoped(account, None, key, {
            'UserName': user, 'AccessKeyId': key, 'SecretAccessKey': secret,
            'Status': 'Active', 'CreateDate': iam._now()})
        moto_key.append((key, secret))
        return 200, {'userName': user, 'accessKeyId': key, 'account': account}

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
            handler = {'/_harness/ecs/interrupt': interrupt,
                       '/_harness/iam/access-key': import_access_key}.get(scope['path'])
            if handler is not None and scope.get('method') == 'POST':
                try:
                    status, payload = await asyncio.to_thread(handler, json.loads(body or b'{}'))
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


def run_moto_child(argv: list[str]) -> None:
    """moto_server (``moto.server.main``), quiet unless --verbose, ending with the launcher."""
    set_parent_death_signal()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    import logging
    if os.environ.get('HARNESS_VERBOSE') != '1':
        logging.getLogger('werkzeug').setLevel(logging.WARNING)  # no line per request
    from moto.server import main as moto_main
    moto_main(argv)


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
        'MINISTACK_ACCOUNT_ID': ACCOUNT_ID,  # its default
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
    if getattr(opts, 'moto_url', None):
        env['HARNESS_MOTO_URL'] = opts.moto_url
    return env


# moto's unchecked calls under --moto --auth: CreateUser, PutUserPolicy, CreateAccessKey.
MOTO_SETUP_CALLS = 3


def moto_env(opts, port: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('AWS_', 'MOTO_', 'TEST_SERVER_MODE'))
           and k != 'INITIAL_NO_AUTH_ACTION_COUNT'}
    env.update({
        'MOTO_PORT': str(port),
        'MOTO_ACCOUNT_ID': ACCOUNT_ID,
        'MOTO_IAM_LOAD_MANAGED_POLICIES': 'true',
        'AWS_DEFAULT_REGION': opts.region,
        'HARNESS_VERBOSE': '1' if opts.verbose else '0',
        'PYTHONUNBUFFERED': '1',
    })
    if opts.auth:
        env['INITIAL_NO_AUTH_ACTION_COUNT'] = str(MOTO_SETUP_CALLS)
    return env


def wait_ready(url: str, proc: subprocess.Popen, timeout: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if 200 <= r.status < 300:  # moto's /moto-api/config answers 201
                    return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def start_child(name: str, argv, env, health: str, opts, stop: threading.Event):
    """Start a child on a free port (three tries); (proc, url, port), or None."""
    for _attempt in range(3):
        port = free_port()
        url = f'http://127.0.0.1:{port}'
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + argv(port),
                                env=env(opts, port), stdin=subprocess.DEVNULL,
                                stdout=sys.stderr, stderr=sys.stderr)
        if wait_ready(url + health, proc, opts.ready_timeout, stop):
            return proc, url, port
        log(f'{name} did not come up on port {port} (exit status {proc.poll()})')
        stop_children([proc])
        if stop.is_set():
            return None
    return None


def stop_children(procs: list, grace: float = 15.0) -> None:
    """SIGTERM to each child by its pid, SIGKILL to those still there after `grace` seconds."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def signed_call(url: str, region: str, service: str, params: dict,
                creds: tuple[str, str] = ('test', 'test')) -> bytes:
    """A form-encoded (query protocol) call, SigV4-signed (default: as ministack's root caller)."""
    from urllib.parse import urlencode
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = urlencode(params)
    req = AWSRequest(method='POST', url=url + '/', data=body,
                     headers={'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8'})
    SigV4Auth(Credentials(*creds), service, region).add_auth(req)
    p = req.prepare()
    r = urllib.request.Request(p.url, data=p.body.encode() if isinstance(p.body, str) else p.body,
                               headers=dict(p.headers), method='POST')
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f'{service} {params.get("Action")} on {url}: HTTP {e.code}: '
                           f'{e.read().decode(errors="replace")[:500]}') from None


def iam_caller(url: str, region: str, creds: tuple[str, str] = ('test', 'test')):
    return lambda **p: signed_call(url, region, 'iam', {'Version': '2010-05-08', **p}, creds)


def parse_access_key(xml: bytes) -> tuple[str, str]:
    import re
    out = xml.decode()
    key = re.search(r'<AccessKeyId>([^<]+)</AccessKeyId>', out).group(1)
    secret = re.search(r'<SecretAccessKey>([^<]+)</SecretAccessKey>', out).group(1)
    return key, secret


def bootstrap_admin(url: str, region: str) -> tuple[str, str]:
    """ministack alone: an allow-all user and an access key made by ministack's IAM."""
    iam = iam_caller(url, region)
    iam(Action='CreateUser', UserName=ADMIN_USER)
    iam(Action='PutUserPolicy', UserName=ADMIN_USER, PolicyName='allow-all', PolicyDocument=ALLOW_ALL)
    return parse_access_key(iam(Action='CreateAccessKey', UserName=ADMIN_USER))


def bootstrap_shared_admin(ms_url: str, moto_url: str, region: str) -> tuple[str, str]:
    """--moto --auth: the allow-all user in both; the key made by moto's IAM, given to ministack."""
    ms = iam_caller(ms_url, region)
    ms(Action='CreateUser', UserName=ADMIN_USER)
    ms(Action='PutUserPolicy', UserName=ADMIN_USER, PolicyName='allow-all', PolicyDocument=ALLOW_ALL)
    # Exactly MOTO_SETUP_CALLS calls, which moto does not check; it checks all that follow.
    moto = iam_caller(moto_url, region)
    moto(Action='CreateUser', UserName=ADMIN_USER)
    moto(Action='PutUserPolicy', UserName=ADMIN_USER, PolicyName='allow-all', PolicyDocument=ALLOW_ALL)
    key, secret = parse_access_key(moto(Action='CreateAccessKey', UserName=ADMIN_USER))
    req = urllib.request.Request(ms_url + '/_harness/iam/access-key', method='POST',
                                 headers={'Content-Type': 'application/json'},
                                 data=json.dumps({'userName': ADMIN_USER, 'accessKeyId': key,
                                                  'secretAccessKey': secret}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
    # The key now works, signature-checked, in both.
    iam_caller(moto_url, region, (key, secret))(Action='GetUser')
    iam_caller(ms_url, region, (key, secret))(Action='GetUser')
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

    procs = []
    moto_url = opts.moto_url = None
    if opts.moto:  # first: ministack asks moto's IAM whether a task definition's roles exist
        started = start_child('moto', lambda p: [MOTO_CHILD, '-H', '127.0.0.1', '-p', str(p)],
                              moto_env, '/moto-api/config', opts, stop)
        if started is None:
            return 1
        procs.append(started[0])
        moto_url = opts.moto_url = started[1]
    started = start_child('ministack', lambda port: [CHILD], child_env, '/_ministack/health',
                          opts, stop)
    if started is None:
        stop_children(procs)
        return 1
    proc, url, port = started
    procs.insert(0, proc)

    creds = ''
    try:
        if opts.auth:
            key, secret = (bootstrap_shared_admin(url, moto_url, opts.region) if opts.moto
                           else bootstrap_admin(url, opts.region))
            creds = f' access_key_id={key} secret_access_key={secret}'
    except Exception as exc:
        log(f'creating the IAM admin user failed: {exc}')
        stop_children(procs)
        sweep_containers(opts.docker_host or os.environ.get('DOCKER_HOST'), port)
        return 1

    other = moto_url or url
    sys.stdout.write(f'listening ecs={url} ec2={other} iam={other} logs={other} '
                     f'secretsmanager={url}{creds}\n')
    sys.stdout.flush()
    log(f'ministack pid {proc.pid} on {url}'
        + (f', moto pid {procs[1].pid} on {moto_url}' if opts.moto else '')
        + f' (auth={opts.auth}, task network={opts.task_network}, '
        f'DOCKER_HOST={opts.docker_host or os.environ.get("DOCKER_HOST", "")})')

    names = {procs[0].pid: 'ministack'}
    if opts.moto:
        names[procs[1].pid] = 'moto'
    while not stop.wait(0.2):
        gone = [p for p in procs if p.poll() is not None]
        if gone:
            for p in gone:
                log(f'{names[p.pid]} exited (status {p.returncode})')
            break
        if opts.exit_with_parent and os.getppid() != parent:
            log('parent process went; exiting')
            break

    stop_children(procs)
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
    if len(sys.argv) > 1 and sys.argv[1] == MOTO_CHILD:
        run_moto_child(sys.argv[2:])
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
    p.add_argument('--moto', action='store_true',
                   help='EC2, IAM and CloudWatch Logs served by moto_server (see above)')
    p.add_argument('--task-network', choices=('host', 'docker'), default='host')
    p.add_argument('--region', default='us-east-1')
    p.add_argument('--ready-timeout', type=float, default=60.0)
    p.add_argument('--exit-with-parent', action=argparse.BooleanOptionalAction, default=True)
    p.add_argument('--verbose', action='store_true')
    return serve(p.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
