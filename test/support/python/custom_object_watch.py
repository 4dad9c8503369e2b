"""Drives a custom resource through the official Kubernetes Python client.

Usage: custom_object_watch.py KUBECONFIG RUN_ID

Lists NodeGroups, watches them from the list's resourceVersion with
kubernetes.watch.Watch().stream (which sends watch=True, as the client
does), creates, merge-patches and deletes one NodeGroup labelled run=RUN_ID,
and prints one JSON line per step and per watch event on stdout. The
caller (test/integration/python-client.test.ts) asserts on those lines.
Exits non-zero with an {"step": "error"} line when a call fails.
"""

import json
import sys
import threading
import traceback

from kubernetes import client, config, watch

GROUP, VERSION, PLURAL = "accessfabric.io", "v1alpha1", "nodegroups"


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    kubeconfig, run = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    api = client.CustomObjectsApi()
    name = "py-" + run

    listed = api.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector="run=" + run)
    rv = listed["metadata"]["resourceVersion"]
    emit(step="list", count=len(listed["items"]), resourceVersion=rv)

    events = []
    failure = []
    w = watch.Watch()
    opened = threading.Event()

    def follow():
        try:
            stream = w.stream(api.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                              label_selector="run=" + run, resource_version=rv, timeout_seconds=30)
            opened.set()
            for event in stream:
                obj = event["raw_object"]
                meta = obj.get("metadata", {})
                emit(step="event", type=event["type"], name=meta.get("name"),
                     description=obj.get("spec", {}).get("description"))
                events.append(event["type"])
                if event["type"] == "DELETED":
                    w.stop()
            if "DELETED" not in events:
                # The server ended the response without the events (e.g. it
                # answered a plain list because it did not read watch=True).
                emit(step="watch-ended", events=events)
        except Exception as err:  # reported to the test, which fails with it
            failure.append(err)
            emit(step="watch-error", error=repr(err))
        finally:
            opened.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    body = {
        "apiVersion": GROUP + "/" + VERSION,
        "kind": "NodeGroup",
        "metadata": {"name": name, "labels": {"run": run}},
        "spec": {"cluster": "python", "displayName": "Python client"},
    }
    created = api.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    emit(step="create", name=created["metadata"]["name"], uid=created["metadata"]["uid"])

    patched = api.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": {"description": "patched by python"}})
    emit(step="patch", description=patched["spec"].get("description"),
         generation=patched["metadata"].get("generation"))

    got = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    emit(step="get", description=got["spec"].get("description"))

    api.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    emit(step="delete", name=name)

    follower.join(timeout=20)
    if follower.is_alive():
        w.stop()
        emit(step="watch-timeout", events=events)
    emit(step="done", events=events)
    return 1 if failure else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:
        emit(step="error", error=repr(err), trace=traceback.format_exc())
        sys.exit(1)
