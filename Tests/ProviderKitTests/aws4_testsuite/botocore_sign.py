#!/usr/bin/env python3
"""Signs requests with botocore's SigV4Auth, the oracle of SigV4Tests' differential test.

Reads a JSON array of requests on stdin, each
  {"method", "path", "query": [[name, value]...], "headers": [[name, value]...],
   "body": base64, "host", "service", "region", "accessKeyID", "secretAccessKey",
   "sessionToken": str|null, "timestamp": "20150830T123600Z"}
and prints a JSON array of {"canonicalRequest", "stringToSign", "authorization"}, the clock frozen
at each request's timestamp. "service": "s3" signs with S3SigV4Auth.
"""

import base64
import datetime
import json
import sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class Capturing:
    """Remembers the canonical request and the string to sign of the last signature."""

    def string_to_sign(self, request, canonical_request):
        self.captured_canonical_request = canonical_request
        self.captured_string_to_sign = super().string_to_sign(request, canonical_request)
        return self.captured_string_to_sign


class CapturingSigV4Auth(Capturing, botocore.auth.SigV4Auth):
    pass


class CapturingS3SigV4Auth(Capturing, botocore.auth.S3SigV4Auth):
    pass


def sign(spec):
    frozen = datetime.datetime.strptime(spec["timestamp"], "%Y%m%dT%H%M%SZ")
    botocore.auth.get_current_datetime = lambda *args, **kwargs: frozen
    request = AWSRequest(
        method=spec["method"],
        url="https://" + spec["host"] + spec["path"],
        data=base64.b64decode(spec["body"]),
        params=[(name, value) for name, value in spec["query"]],
    )
    for name, value in spec["headers"]:
        request.headers[name] = value
    del request.headers["Host"]
    request.headers["Host"] = spec["host"]
    credentials = Credentials(spec["accessKeyID"], spec["secretAccessKey"], spec.get("sessionToken"))
    signer_type = CapturingS3SigV4Auth if spec["service"] == "s3" else CapturingSigV4Auth
    signer = signer_type(credentials, spec["service"], spec["region"])
    signer.add_auth(request)
    return {
        "canonicalRequest": signer.captured_canonical_request,
        "stringToSign": signer.captured_string_to_sign,
        "authorization": request.headers["Authorization"],
    }


def main():
    json.dump([sign(spec) for spec in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
