"""Checks OpenLineage run events (one JSON object per line) against the OpenLineage Python
client's model, which is generated from the OpenLineage spec: every event is rebuilt from its
JSON with the model's classes, so an unknown or missing key, a value of the wrong type, a bad
event type, run id or event time fails. Standard facets are rebuilt with their own classes;
other facets must still carry `_producer` and `_schemaURL` URIs. Then each rebuilt event must
serialise back to the same JSON (which also checks every `_schemaURL` names the spec version of
its facet that the model was generated from).

    python lineage_check.py EVENTS.jsonl

Prints one line per event problem and exits 1 on any; prints a summary otherwise. Run it with
the venv from tests/rig/openlineage.sh.
"""

import json
import sys
from urllib.parse import urlparse

from openlineage.client import event_v2
from openlineage.client.generated import (
    base,
    error_message_run,
    job_type_job,
    processing_engine_run,
    schema_dataset,
)
from openlineage.client.serde import Serde

def uri(value, what):
    parsed = urlparse(value)
    if not parsed.scheme:
        raise ValueError(f"{what} is not a URI: {value!r}")
    return value


def facet_keys(facet, what):
    # The model sets each facet's `_schemaURL` itself (the facet's spec version): the round trip
    # below checks ours against it. `_producer` is an init argument named `producer`.
    uri(facet.pop("_schemaURL"), f"{what}._schemaURL")
    return {"producer": uri(facet.pop("_producer"), f"{what}._producer")}


def schema_fields(fields):
    return [
        schema_dataset.SchemaDatasetFacetFields(
            **{k: v for k, v in f.items() if k != "fields"},
            fields=schema_fields(f.get("fields", [])) or None,
        )
        for f in fields
    ]


# The model class of each standard facet, by where it sits and its key.
DATASET_FACETS = {
    "schema": lambda keys, f: schema_dataset.SchemaDatasetFacet(fields=schema_fields(f.pop("fields")), **keys, **f),
}
RUN_FACETS = {
    "processing_engine": lambda keys, f: processing_engine_run.ProcessingEngineRunFacet(**keys, **f),
    "errorMessage": lambda keys, f: error_message_run.ErrorMessageRunFacet(**keys, **f),
}
JOB_FACETS = {
    "jobType": lambda keys, f: job_type_job.JobTypeJobFacet(**keys, **f),
}


def rebuild_facets(facets, what, known):
    """Each facet rebuilt by its model class; on runs, `happystreams_*` facets are custom ones."""
    out = {}
    for name, facet in facets.items():
        facet = dict(facet)
        keys = facet_keys(facet, f"{what}.{name}")
        if name in known:
            out[name] = known[name](keys, facet)
        elif known is RUN_FACETS and name.startswith("happystreams_"):
            # A custom facet: its own properties beside the two every facet has.
            out[name] = base.RunFacet(**keys).with_additional_properties(**facet)
        else:
            raise ValueError(f"{what}: unexpected facet {name}")
    return out


def rebuild(event):
    event = dict(event)
    # The model sets the event's schemaURL itself; the round trip checks ours against it.
    if event.pop("schemaURL", None) is None:
        raise ValueError("no schemaURL")
    run = dict(event.pop("run"))
    job = dict(event.pop("job"))
    inputs = event.pop("inputs")
    outputs = event.pop("outputs")
    return event_v2.RunEvent(
        eventType=event_v2.RunState(event.pop("eventType")),
        eventTime=event.pop("eventTime"),
        producer=uri(event.pop("producer"), "producer"),
        run=event_v2.Run(runId=run.pop("runId"), facets=rebuild_facets(run.pop("facets"), "run.facets", RUN_FACETS), **run),
        job=event_v2.Job(
            namespace=job.pop("namespace"), name=job.pop("name"), facets=rebuild_facets(job.pop("facets"), "job.facets", JOB_FACETS), **job
        ),
        inputs=[
            event_v2.InputDataset(d["namespace"], d["name"], facets=rebuild_facets(d["facets"], f"inputs[{i}]", DATASET_FACETS))
            for i, d in enumerate(inputs)
        ],
        outputs=[
            event_v2.OutputDataset(d["namespace"], d["name"], facets=rebuild_facets(d["facets"], f"outputs[{i}]", DATASET_FACETS))
            for i, d in enumerate(outputs)
        ],
        **event,
    )


def first_difference(ours, model, path="$"):
    """Where two JSON values first differ, and how."""
    if isinstance(ours, dict) and isinstance(model, dict):
        for key in sorted(set(ours) | set(model)):
            if key not in model:
                return f"{path}.{key}: not in the model's"
            if key not in ours and model[key] in ({}, []):
                continue  # an optional key the model writes empty
            if key not in ours:
                return f"{path}.{key}: only in the model's ({json.dumps(model[key])[:200]})"
            found = first_difference(ours[key], model[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(ours, list) and isinstance(model, list) and len(ours) == len(model):
        for i, (a, b) in enumerate(zip(ours, model)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if ours == model else f"{path}: ours {json.dumps(ours)[:200]}, the model's {json.dumps(model)[:200]}"


def main():
    problems = 0
    events = 0
    with open(sys.argv[1], encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            events += 1
            try:
                original = json.loads(line)
                model = rebuild(original)
                again = json.loads(Serde.to_json(model))
                # A custom facet's schema is ours, not the model's.
                for name, facet in original["run"]["facets"].items():
                    if name.startswith("happystreams_"):
                        again["run"]["facets"][name]["_schemaURL"] = facet["_schemaURL"]
                difference = first_difference(original, again)
                if difference:
                    raise ValueError(f"the model serialises it differently: {difference}")
            except Exception as e:  # noqa: BLE001 - every problem is reported with its line
                problems += 1
                print(f"line {number}: {type(e).__name__}: {e}")
    if problems:
        sys.exit(1)
    print(f"{events} OpenLineage events valid")


if __name__ == "__main__":
    main()
