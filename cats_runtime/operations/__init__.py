"""operations layer."""

from __future__ import annotations

from ._access import (
    AllowList,
    Endorsement,
    TokenStore,
    code_endorsement_payload,
    endorse_code,
    endorse_function,
    endorsement_payload,
)
from ._function import DEFAULT_IGNORE, build_function, parse_function_spec
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
from ._policy import PolicyReport, PolicyViolation, StackPolicyResult, check_policies
from ._redeploy import RedeployOutcome, materialize_program, redeploy, required_secrets
from ._run import (
    Execution,
    RunOutcome,
    execute_order,
    find_parents,
    load_params_file,
    make_order,
    parse_input,
    parse_param,
    run,
    run_order,
)
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
    "AllowList",
    "Endorsement",
    "FetchReport",
    "NodeIdentity",
    "PeerFailure",
    "TokenStore",
    "bom_signing_payload",
    "did_from_public_key",
    "code_endorsement_payload",
    "endorse_code",
    "endorse_function",
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
    "diff_trees",
    "execute_order",
    "find_parents",
    "invoice_of",
    "lineage",
    "load_bom",
    "load_params_file",
    "local_structure",
    "make_order",
    "parse_function_spec",
    "parse_input",
    "parse_param",
    "read_log",
    "rebuild_catalog",
    "render_lineage",
    "run",
    "run_order",
    "sanitize_stack_config",
    "store_structure",
    "verify",
    "verify_structural",
]
