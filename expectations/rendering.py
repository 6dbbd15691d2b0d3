"""One sentence per custom expectation in Data Docs, in both of GE's renderer paths."""

from __future__ import annotations

from typing import Any

from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer
from great_expectations.render.renderer_configuration import (
    RendererConfiguration,
    RendererValueType,
)
from great_expectations.render.util import num_to_str


class SentenceExpectation(ColumnMapExpectation):
    """A column-map expectation that Data Docs render as `<column> <sentence>[, at least N % of the time].`

    Subclasses say what they expect in `_sentence(kwargs)`, with their settings written in (table
    and column names, types; never data values); `$` there is escaped so GE cannot take it for a
    parameter. Without this, GE renders a custom expectation as its raw kwargs.
    """

    @classmethod
    def _sentence(cls, kwargs: dict[str, Any]) -> str:
        raise NotImplementedError

    @classmethod
    def _template(cls, kwargs: dict[str, Any], include_column: bool) -> str:
        text = cls._sentence(kwargs).replace("$", "$$")
        mostly = kwargs.get("mostly")
        text += ", at least $mostly_pct % of the time." if mostly is not None and mostly < 1 else "."
        return f"$column {text}" if include_column else text[0].upper() + text[1:]

    @classmethod
    def _prescriptive_template(cls, renderer_configuration: RendererConfiguration) -> RendererConfiguration:
        renderer_configuration.add_param(name="column", param_type=RendererValueType.STRING)
        renderer_configuration.add_param(name="mostly", param_type=RendererValueType.NUMBER)
        params = renderer_configuration.params
        if params.mostly and params.mostly.value < 1.0:
            renderer_configuration = cls._add_mostly_pct_param(renderer_configuration=renderer_configuration)
        renderer_configuration.template_str = cls._template(
            renderer_configuration.kwargs, renderer_configuration.include_column_name)
        return renderer_configuration

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None, runtime_configuration=None, **kwargs):
        # Some dispatch paths pass only a result, or neither: fall back to what is there.
        config = configuration or (result.expectation_config if result is not None else None)
        params = dict(config.kwargs) if config is not None else {}
        runtime_configuration = runtime_configuration or {}
        if isinstance(params.get("mostly"), (int, float)) and params["mostly"] < 1:
            params["mostly_pct"] = num_to_str(params["mostly"] * 100, no_scientific=True)
        include_column = runtime_configuration.get("include_column_name") is not False
        return [RenderedStringTemplateContent(
            content_block_type="string_template",
            string_template={"template": cls._template(params, include_column), "params": params,
                             "styling": runtime_configuration.get("styling")},
        )]
