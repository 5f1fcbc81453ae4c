#!/usr/bin/env python3
"""Checks requests the ECS provider sent against botocore's service models.

Usage: check_shapes.py REQUESTS.json

REQUESTS.json is a list of {"service": signing name, "target": X-Amz-Target or "", "body": text}.
JSON-protocol requests (a target) are validated with botocore's ParamValidator against the
operation's input shape: unknown members, wrong types, missing required members. Query-protocol
requests (a form body) must name an operation of the model, its API version, and only top-level
parameters the input shape serialises, with every required one present. Prints each problem and
exits 1 if there is any.
"""
import json
import sys
import urllib.parse

import botocore.session
from botocore.validate import ParamValidator


def query_names(shape, service):
    """Top-level parameter names as the query serialiser writes them, mapped to members."""
    names = {}
    for member, member_shape in shape.members.items():
        serialization = member_shape.serialization
        if service == 'ec2':
            name = serialization.get('queryName') or (
                serialization.get('name', member)[:1].upper() + serialization.get('name', member)[1:])
        else:
            name = serialization.get('name', member)
        names[name] = member
    return names


def main():
    requests = json.load(open(sys.argv[1]))
    session = botocore.session.get_session()
    models = {}
    problems = []
    checked = 0
    for request in requests:
        service = request['service']
        if service not in models:
            models[service] = session.get_service_model(service)
        model = models[service]
        body = request['body']
        if request['target']:
            operation = request['target'].split('.')[-1]
            if operation not in model.operation_names:
                problems.append(f'{service}: {operation} is not an operation of the model')
                continue
            shape = model.operation_model(operation).input_shape
            params = json.loads(body or '{}')
            report = ParamValidator().validate(params, shape)
            if report.has_errors():
                problems.append(f'{service} {operation}: {report.generate_report()}\n  body: {body[:500]}')
        else:
            form = urllib.parse.parse_qsl(body, keep_blank_values=True)
            values = dict(form)
            operation = values.get('Action', '')
            if operation not in model.operation_names:
                problems.append(f'{service}: {operation!r} is not an operation of the model')
                continue
            if values.get('Version') != model.api_version:
                problems.append(f'{service} {operation}: Version {values.get("Version")} is not {model.api_version}')
            shape = model.operation_model(operation).input_shape
            names = query_names(shape, service) if shape else {}
            given = set()
            for key, _ in form:
                if key in ('Action', 'Version'):
                    continue
                top = key.split('.')[0]
                if top not in names:
                    problems.append(f'{service} {operation}: {key} is not a parameter (known: {sorted(names)})')
                else:
                    given.add(names[top])
            for required in (shape.required_members if shape else []):
                if required not in given:
                    problems.append(f'{service} {operation}: the required {required} is missing')
        checked += 1
    for problem in problems:
        print(problem)
    print(f'{checked} requests checked, {len(problems)} problems')
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
