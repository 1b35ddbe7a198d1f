"""operations layer."""

from __future__ import annotations

from ._access import AllowList, Endorsement, TokenStore, endorse_code, endorsement_payload
from ._function import DEFAULT_IGNORE, build_function, check_entrypoint, inspect_function, parse_function_spec
from ._identity import (
    NodeIdentity,
    bom_signing_payload,
    did_from_public_key,
    public_key_from_did,
    sign_bom,
    verify_bom_signature,
    verify_signature,
)
from ._lineage import FORMATS as LINEAGE_FORMATS
from ._lineage import Lineage, LineageNode, lineage
from ._lineage import render as render_lineage
from ._listing import RunFacts, RunListing, function_label, list_runs, run_facts
from ._log import invoice_of, read_log
from ._mesh import (
    FetchReport,
    PeerFailure,
    fetch_from_peers,
    fetch_order,
    index_records,
    load_order,
    order_blocks,
    raise_for_node_error,
    run_status,
    submit_order,
    wait_for_run,
)
from ._node import Node, rebuild_catalog
from ._params import DECLARATION_FILE, load_declaration, resolve_params
from ._policy import PolicyReport, PolicyViolation, StackPolicyResult, check_policies
from ._redeploy import RedeployOutcome, materialize_program, redeploy, required_secrets
from ._run import (
    Execution,
    RunOutcome,
    check_plant,
    execute_order,
    find_parents,
    load_params_file,
    make_order,
    parse_input,
    parse_param,
    run,
    run_order,
)
from ._scaffold import SCAFFOLD_ENTRYPOINT, new_function
from ._structure import build_structure, local_structure, sanitize_stack_config, store_structure
from ._verify import StructuralReport, VerifyOutcome, diff_trees, load_bom, verify, verify_structural

__all__: list[str] = [
    "RedeployOutcome",
    "materialize_program",
    "redeploy",
    "required_secrets",
    "PolicyReport",
    "PolicyViolation",
    "StackPolicyResult",
    "check_policies",
    "DECLARATION_FILE",
    "SCAFFOLD_ENTRYPOINT",
    "new_function",
    "AllowList",
    "Endorsement",
    "FetchReport",
    "NodeIdentity",
    "PeerFailure",
    "TokenStore",
    "bom_signing_payload",
    "did_from_public_key",
    "endorse_code",
    "endorsement_payload",
    "fetch_from_peers",
    "fetch_order",
    "index_records",
    "load_order",
    "order_blocks",
    "public_key_from_did",
    "raise_for_node_error",
    "run_status",
    "sign_bom",
    "submit_order",
    "wait_for_run",
    "verify_bom_signature",
    "verify_signature",
    "DEFAULT_IGNORE",
    "LINEAGE_FORMATS",
    "Execution",
    "Lineage",
    "LineageNode",
    "Node",
    "RunOutcome",
    "StructuralReport",
    "VerifyOutcome",
    "build_function",
    "build_structure",
    "check_entrypoint",
    "check_plant",
    "diff_trees",
    "execute_order",
    "find_parents",
    "RunFacts",
    "RunListing",
    "function_label",
    "list_runs",
    "run_facts",
    "inspect_function",
    "invoice_of",
    "lineage",
    "load_bom",
    "load_declaration",
    "load_params_file",
    "local_structure",
    "make_order",
    "parse_function_spec",
    "parse_input",
    "parse_param",
    "read_log",
    "rebuild_catalog",
    "render_lineage",
    "resolve_params",
    "run",
    "run_order",
    "sanitize_stack_config",
    "store_structure",
    "verify",
    "verify_structural",
]
