"""The FHIR REST interactions for declared resource types, as one FastAPI router.

    router = fhir_router([OBSERVATION, PATIENT], store, base_url=settings.fhir_base_url)

Per type (:class:`relearn.shared.fhir.routes.TypeApi`) and ``POST [base]`` for batch and transaction
Bundles (:class:`relearn.shared.fhir.transaction.BundleApi`, which builds on the per-type routes): this
module sits above both, so neither imports the other's user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter

from relearn.shared.fhir import openapi as fhir_openapi
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.response import FhirResponse
from relearn.shared.fhir.routes import TypeApi
from relearn.shared.fhir.store import FhirStore
from relearn.shared.fhir.transaction import BundleApi

__all__ = ["fhir_router"]


def fhir_router(
    definitions: Sequence[ResourceDefinition],
    store: FhirStore,
    *,
    prefix: str = "/fhir",
    base_url: str | None = None,
    capability: Mapping[str, Any] | None = None,
) -> APIRouter:
    """A router serving every interaction each definition declares.

    ``base_url`` is the public FHIR base used in ``fullUrl``, ``Location`` and paging links
    (default: the store's ``base_url``, else this server's own URL + ``prefix``). With
    ``capability`` (see :func:`capability_statement`) it also serves ``GET {prefix}/metadata``.
    """
    for rdef in definitions:
        store.register(rdef)
    router = APIRouter(prefix=prefix, default_response_class=FhirResponse)
    if capability is not None:
        statement = dict(capability)

        def metadata() -> FhirResponse:
            return FhirResponse(statement)

        router.add_api_route(
            "/metadata",
            metadata,
            methods=["GET"],
            tags=["FHIR"],
            summary="CapabilityStatement (no token needed)",
        )
    apis = {rdef.type: TypeApi(rdef, store, base_url, prefix) for rdef in definitions}
    for api in apis.values():
        api.install(router, prefix)
    bundles = BundleApi(apis, base_url or store.base_url, prefix)
    router.add_api_route(
        "",
        bundles.post,
        methods=["POST"],
        tags=["FHIR"],
        summary="batch or transaction Bundle (a transaction is all-or-nothing)",
        openapi_extra=fhir_openapi.operation_doc("bundle", "Bundle", body=True),
        name="system.bundle.post",
    )
    return router
