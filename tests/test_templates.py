import pytest

from core.catalog import load_catalog
from core.templates import MAX_TEMPLATE_CHARS, TemplateError, compile_template

KNOWN = {"AuthorDisplayName", "Subject", "ParentName", "IsNew", "Count", "Roles"}


def test_render_merges_properties():
    t = compile_template('{AuthorDisplayName} posted "{Subject}" in {ParentName}', KNOWN)
    assert t.variables == {"AuthorDisplayName", "Subject", "ParentName"}
    assert t.render({"AuthorDisplayName": "Ann Example", "Subject": "Hi", "ParentName": "Demo"}) == \
        'Ann Example posted "Hi" in Demo'


def test_values_of_other_types_and_missing_ones():
    t = compile_template("{IsNew}/{Count}/{Roles}/{Subject}.", KNOWN)
    assert t.render({"IsNew": True, "Count": 3, "Roles": ["a", "b"]}) == 'true/3/["a","b"]/.'


def test_literal_braces():
    assert compile_template("{{x}} {Subject}", KNOWN).render({"Subject": "s"}) == "{x} s"


def test_unknown_property_named_in_error():
    with pytest.raises(TemplateError, match=r"\{Subjct\}"):
        compile_template("{Subjct}", KNOWN)


def test_length_limit_before_merging():
    compile_template("x" * MAX_TEMPLATE_CHARS, KNOWN)
    with pytest.raises(TemplateError, match="at most 500"):
        compile_template("x" * (MAX_TEMPLATE_CHARS + 1), KNOWN)


@pytest.mark.parametrize("hostile", [
    "{Subject.__class__}", "{Subject.__class__.__mro__}", "{Subject[0]}", "{Subject!r}", "{Subject:>999999}",
    "{0}", "{}", "{__import__('os').system('id')}", "{Subject", "Subject}", "{a{b}}", "{ Subject + 1 }",
])
def test_hostile_templates_refused(hostile):
    with pytest.raises(TemplateError):
        compile_template(hostile, KNOWN)


def test_rendering_never_interprets_values():
    # A value that looks like a template or a format spec is copied, not evaluated.
    t = compile_template("{Subject}", KNOWN)
    assert t.render({"Subject": "{ParentName} {0.__class__} %s"}) == "{ParentName} {0.__class__} %s"


def test_catalog_checks_per_activity():
    cat = load_catalog()
    compile_template("{AccessedByDisplayName} viewed {ParentName}", cat.known_properties("LibraryEntryView"))
    with pytest.raises(TemplateError, match="AuthorDisplayName"):
        compile_template("{AuthorDisplayName}", cat.known_properties("LibraryEntryView"))


def test_contact_activities_take_property_names_not_aliases():
    from core.catalog import bundled_document, build_catalog

    extra = {"codes": {"ContactUpdate": {"category": "Contacts", "properties": ["Bool01", "FirstName"]}}}
    cat = build_catalog(bundled_document(), extra)
    compile_template("{FirstName} {Bool01}", cat.known_properties("ContactUpdate"), cat.aliases("ContactUpdate"))
    with pytest.raises(TemplateError, match="alias, use the actual property name Bool01"):
        compile_template("{IsCompany}", cat.known_properties("ContactUpdate"), cat.aliases("ContactUpdate"))
