"""Drives ohf's gRPC API from Python, with stubs generated from proto/ by grpcio-tools.

Usage: grpc_client.py PROTO_DIR ADDRESS OPERATOR_TOKEN READER_TOKEN
Prints one JSON line of what it saw; exits non-zero when an expectation fails.
"""

import importlib
import json
import sys
import tempfile
from importlib import resources

import grpc
from grpc_tools import protoc

proto_dir, address, operator, reader = sys.argv[1:5]
out = tempfile.mkdtemp()
well_known = str(resources.files("grpc_tools") / "_proto")
files = ["ohf/v1/requests.proto", "ohf/v1/templates.proto"]
code = protoc.main(["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *files])
assert code == 0, f"protoc failed: {code}"
sys.path.insert(0, out)
requests_pb2 = importlib.import_module("ohf.v1.requests_pb2")
requests_grpc = importlib.import_module("ohf.v1.requests_pb2_grpc")
templates_pb2 = importlib.import_module("ohf.v1.templates_pb2")
templates_grpc = importlib.import_module("ohf.v1.templates_pb2_grpc")

channel = grpc.insecure_channel(address)
stub = requests_grpc.RequestServiceStub(channel)
templates = templates_grpc.TemplateServiceStub(channel)
as_operator = [("authorization", f"Bearer {operator}")]
as_reader = [("authorization", f"Bearer {reader}")]
seen = {}


def refused(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except grpc.RpcError as e:
        trailers = dict(e.trailing_metadata() or ())
        return e.code(), trailers.get("ohf-error-code")
    raise AssertionError("the call was not refused")


def watch(request_id):
    last, kinds = None, []
    for update in stub.WatchRequest(requests_pb2.WatchRequestRequest(request_id=request_id), metadata=as_reader, timeout=30):
        if update.HasField("event"):
            kinds.append(update.event.type)
        last = update.request
    return last, kinds


listed = templates.ListTemplates(templates_pb2.ListTemplatesRequest(), metadata=as_reader)
seen["templates"] = [t.template_id for t in listed.templates]

created = stub.RequestMachines(
    requests_pb2.RequestMachinesRequest(template_id="OnDemand-Minimal", machine_count=2, tags={"team": "py"}),
    metadata=as_operator,
)
done, kinds = watch(created.request_id)
assert done.status == requests_pb2.REQUEST_STATE_COMPLETED, done
assert len(done.machines) == 2 and all(m.status == "running" for m in done.machines), done
assert kinds[0] == "created" and "state_changed" in kinds, kinds
seen["created"] = created.request_id
seen["events"] = kinds

listed = stub.ListRequests(requests_pb2.ListRequestsRequest(states=[requests_pb2.REQUEST_STATE_COMPLETED]), metadata=as_reader)
assert [r.request_id for r in listed.requests] == [created.request_id], listed

ret = stub.RequestReturnMachines(
    requests_pb2.RequestReturnMachinesRequest(machine_ids=[m.machine_id for m in done.machines]), metadata=as_operator
)
back, _ = watch(ret.request_id)
assert back.status == requests_pb2.REQUEST_STATE_COMPLETED, back
assert all(m.status == "terminated" for m in back.machines), back
seen["returned"] = ret.request_id

slow = stub.RequestMachines(
    requests_pb2.RequestMachinesRequest(template_id="OnDemand-Minimal", machine_count=1, provider="sim-slow"),
    metadata=as_operator,
)
cancelled = stub.CancelRequest(requests_pb2.CancelRequestRequest(request_id=slow.request_id), metadata=as_operator)
assert cancelled.status == requests_pb2.REQUEST_STATE_CANCELLED, cancelled
seen["cancelled"] = slow.request_id

errors = {
    "template": refused(stub.RequestMachines, requests_pb2.RequestMachinesRequest(template_id="Nope", machine_count=1), metadata=as_operator),
    "count": refused(stub.RequestMachines, requests_pb2.RequestMachinesRequest(template_id="OnDemand-Minimal", machine_count=0), metadata=as_operator),
    "missing": refused(stub.CancelRequest, requests_pb2.CancelRequestRequest(request_id="ghost"), metadata=as_operator),
    "final": refused(stub.CancelRequest, requests_pb2.CancelRequestRequest(request_id=created.request_id), metadata=as_operator),
    "no_token": refused(stub.ListRequests, requests_pb2.ListRequestsRequest()),
    "wrong_token": refused(stub.ListRequests, requests_pb2.ListRequestsRequest(), metadata=[("authorization", "Bearer nope")]),
    "reader_mutates": refused(stub.RequestMachines, requests_pb2.RequestMachinesRequest(template_id="OnDemand-Minimal", machine_count=1), metadata=as_reader),
}
seen["errors"] = {k: [c.name, o] for k, (c, o) in errors.items()}
print(json.dumps(seen))
