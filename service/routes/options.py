"""GET /options: the server's defaults and limits, for front-ends' forms."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from ..deps import SettingsDep, require_api_key
from ..schemas import KEY_REFUSED, ServerOptions, error_responses

router = APIRouter(tags=["options"], dependencies=[Depends(require_api_key)], responses=error_responses(KEY_REFUSED))


@router.get("/options", response_model=ServerOptions, summary="Defaults and limits of this server")
def read_options(settings: SettingsDep) -> ServerOptions:
    return ServerOptions.from_settings(settings)
