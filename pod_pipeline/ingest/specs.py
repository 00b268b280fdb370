"""Each delivered file type: its required columns, key, identifiers and rules (contract 4-8).

Two kinds of rule, judged at different times:

- row rules look at one row or one file only: they are judged once, when a batch is loaded, and
  history keeps each batch's rows with their own verdicts;
- cross-file rules compare a row with the site's register (the reference, joined as `reg`): they
  are judged again on every run against the *current* register, so a participant added to the
  register later brings their rows back, and one removed (or whose NHS number is corrected) sends
  them to quarantine (pod_pipeline/ingest/current.py).

Rules are listed in the contract's column order; a row's first broken row rule is its reason, and
only a row that passes them all is judged by the cross-file rules.
"""

from collections.abc import Callable
from dataclasses import dataclass

from pod_pipeline import seeds
from pod_pipeline.identifiers import sql_nhs_number_is_valid, sql_pseudonym
from pod_pipeline.ingest import rules as r
from pod_pipeline.ingest.rules import Rule
from pod_pipeline.settings import Settings
from pod_pipeline.sql import lit, q

GENDER_CODES = ("1", "2", "9", "X")
ETHNIC_CODES = tuple("ABCDEFGHJKLMNPRSZ")
WITHDRAWAL_TYPES = ("follow_up", "all_data", "died")
HONOS_ITEMS = tuple(f"honos_{i:02d}" for i in range(1, 13))
KEY_ELEMENTS = tuple(f"key_element_{i:02d}" for i in range(1, 13))
CARER_INSTRUMENT = "carer_questionnaire"
EPISODE_TYPES = ("inpatient", "crisis_team")

REDCAP_PLUMBING = ("record_id", "redcap_event_name", "redcap_repeat_instrument",
                   "redcap_repeat_instance", "redcap_data_access_group")
DICTIONARY_COLUMNS = (
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name",
    "Matrix Ranking?", "Field Annotation",
)


@dataclass(frozen=True)
class Column:
    """A column of a raw table: by default the delivered column of that name, verbatim (NULL when
    the export lacks it); or SQL over the history row `h` and the reference register `reg`; or a
    REDCap instrument's field (NULL when the site's dictionary flags it as an identifier, or the
    row's instrument was quarantined)."""

    name: str
    sql: str | None = None
    type: str = "varchar"
    instrument: str | None = None


@dataclass(frozen=True)
class Derived:
    """A column computed once at load and kept in history beside the delivered ones."""

    name: str
    sql: str  # over the staged row `s`
    type: str


@dataclass(frozen=True)
class FileSpec:
    file: str
    table: str
    required: tuple[str, ...]
    key: tuple[str, ...]
    identifiers: tuple[str, ...]  # never leave the restricted schema, never shown in a detail
    row_rules: Callable[[str], list[Rule]]  # site -> rules judged at load time
    cross_rules: Callable[[str], list[Rule]] | None = None  # site -> rules judged every run against `reg`
    link: str | None = None  # SQL joining a history row `h` to the current reference register `reg`
    reads: tuple[str, ...] = ()  # other files this file's raw rows are built with (loaded first)
    # The history column naming whose row it is (export drift counts participants by it); files
    # linked by NHS number name the person by the number's keyed pseudonym.
    participant: str | None = None
    derived: tuple[Derived, ...] = ()
    # The raw table's columns (before lineage); None: the required columns but identifiers, verbatim.
    columns: Callable[[], tuple[Column, ...]] | None = None

    @property
    def uses_register(self) -> bool:
        return self.cross_rules is not None

    def raw_columns(self) -> tuple[Column, ...]:
        if self.columns is not None:
            return self.columns()
        return tuple(Column(c) for c in self.required if c not in self.identifiers)


# The keyed pseudonym that links a person across files, so the NHS number is never needed again.
PSEUDONYM = Derived("_pseudonym", f"case when s.nhs_number is not null then {sql_pseudonym('s.nhs_number')} end",
                    "varchar")
_CONSENT, _BIRTH = r.iso_date("consent_date"), r.iso_date("date_of_birth")
AGE_AT_CONSENT = Derived("_age_at_consent", f"date_part('year', {_CONSENT}) - date_part('year', {_BIRTH}) - case when "
                         f"strftime({_CONSENT}, '%m%d') < strftime({_BIRTH}, '%m%d') then 1 else 0 end", "integer")


def _register_columns() -> tuple[Column, ...]:
    return (*(Column(c) for c in ("study_id", "gender", "ethnic_category", "arm", "cluster_id", "consent_date",
                                  "withdrawal_date", "withdrawal_type")),
            Column("age_at_consent", "_age_at_consent", "integer"),
            Column("has_nhs_number", "_pseudonym is not null", "boolean"))


def _honos_columns() -> tuple[Column, ...]:
    return (Column("assessment_id"), Column("study_id", "reg.ref_study_id"), Column("assessment_date"),
            Column("rater_role"), *(Column(c) for c in HONOS_ITEMS), Column("honos_08_problem_type"))


def _acute_care_columns() -> tuple[Column, ...]:
    # episode_id is the EPR's key: kept here so staging can take the newest version of an episode,
    # never carried past staging (contract national-trial 6).
    return (Column("episode_id"), Column("study_id", "reg.ref_study_id"), Column("episode_type"),
            Column("start_date"), Column("end_date"), Column("detained"))


def _redcap_columns() -> tuple[Column, ...]:
    return (*(Column(c) for c in REDCAP_PLUMBING),
            *(Column(i.field_name, instrument=i.instrument) for i in r.instrument_items()),
            Column("quarantined_instruments", "_quarantined_instruments"))


def _register_rules(site: str) -> list[Rule]:
    consent, withdrawal, dob = r.iso_date("consent_date"), r.iso_date("withdrawal_date"), r.iso_date("date_of_birth")
    return [
        r.required("study_id"),
        r.pattern("study_id", r.STUDY_ID_PATTERN, "KMPT-0007"),
        r.duplicate("study_id", ["study_id"]),
        r.nhs_number("nhs_number", sql_nhs_number_is_valid(q("nhs_number"))),
        r.required("date_of_birth"),
        r.date("date_of_birth", identifier=True),
        r.when("date_of_birth", "date_order", f"{dob} >= coalesce({consent}, {dob} + 1)",
               "'date_of_birth is not before consent_date'"),
        r.required("gender"),
        r.code("gender", GENDER_CODES),
        r.code("ethnic_category", ETHNIC_CODES),
        r.required("arm"),
        r.code("arm", ("POD", "TAU")),
        r.free_text("cluster_id"),
        r.required("consent_date"),
        r.date("consent_date"),
        r.date("withdrawal_date"),
        r.when("withdrawal_date", "date_order", f"{withdrawal} < {consent}",
               "'withdrawal_date ' || withdrawal_date || ' is before consent_date ' || consent_date"),
        r.when("withdrawal_date", "inconsistent_value", "withdrawal_type is null",
               "'withdrawal_date is given without a withdrawal_type'"),
        r.code("withdrawal_type", WITHDRAWAL_TYPES),
        r.when("withdrawal_type", "inconsistent_value", "withdrawal_date is null",
               "'withdrawal_type ' || withdrawal_type || ' is given without a withdrawal_date'"),
    ]


def _redcap_rules(site: str) -> list[Rule]:
    # The site's protocol decides its events; the deployment's assignment is a setting.
    protocol = seeds.site_protocol(site, Settings.from_env().site_protocols)
    events = ", ".join(lit(e) for e in r.protocol_events(protocol))
    carer = f"redcap_repeat_instrument = '{CARER_INSTRUMENT}'"
    return [
        r.required("record_id"),
        r.duplicate("record_id", ["record_id", "redcap_event_name", "redcap_repeat_instrument",
                                  "redcap_repeat_instance"]),
        r.required("redcap_event_name"),
        r.when("redcap_event_name", "invalid_event", f"redcap_event_name not in ({events})",
               f"'redcap_event_name = ' || {r.shown('redcap_event_name')} "
               f"|| ' is not an event of protocol {protocol} (site {site})'"),
        r.code("redcap_repeat_instrument", (CARER_INSTRUMENT,)),
        Rule("redcap_repeat_instance",
             f"case when {carer} "
             "and not coalesce(regexp_full_match(redcap_repeat_instance, '[1-9][0-9]{0,3}'), false) "
             "then 'invalid_repeat' "
             "when redcap_repeat_instrument is null and redcap_repeat_instance is not null then 'invalid_repeat' end",
             "'redcap_repeat_instance ' || coalesce('''' || redcap_repeat_instance || '''', 'empty') "
             "|| ' does not fit redcap_repeat_instrument ' || coalesce(redcap_repeat_instrument, 'empty')"),
        r.when("redcap_data_access_group", "invalid_code", f"redcap_data_access_group <> {lit(site)}",
               f"'redcap_data_access_group = ' || {r.shown('redcap_data_access_group')} "
               f"|| ' is not this site ({site})'"),
        Rule("carer_id", f"case when {carer} and carer_id is null then 'missing_value' end",
             "'carer_id is empty in a carer questionnaire row'"),
        r.free_text("carer_id"),
        # A row collects the carer questionnaire (a repeat instance) or the participant's
        # instruments, never both: the other kind's fields are empty (contract 5).
        *(_not_collected(item) for item in r.instrument_items()),
    ]


def _redcap_cross_rules(site: str) -> list[Rule]:
    event_arm = "case " + " ".join(
        f"when redcap_event_name = {lit(e)} then {lit(arm)}" for e, arm in r.redcap_events().items()
    ) + " end"
    return [
        r.when("record_id", "unknown_participant", "reg.ref_study_id is null",
               f"'record_id ' || {r.shown('record_id')} || ' is not in the site''s register'"),
        r.when("redcap_event_name", "arm_mismatch", f"reg.ref_arm is not null and {event_arm} <> reg.ref_arm",
               "'event ' || redcap_event_name || ' is for arm ' || " + event_arm
               + " || ', the register says ' || reg.ref_arm"),
    ]


def _not_collected(item: r.Item) -> Rule:
    """A value in a field of an instrument this kind of REDCap row does not collect."""
    carer = item.instrument in r.carer_instruments()
    row = "a participant row" if carer else "a carer questionnaire row"
    return r.when(item.field_name, "inconsistent_value",
                  f"redcap_repeat_instrument is {'' if carer else 'not '}distinct from "
                  f"'{CARER_INSTRUMENT}'",
                  lit(f"{item.field_name} has a value, but {row} does not collect {item.instrument}"))


def _honos_rules(site: str) -> list[Rule]:
    item_rules = [r.whole_number(item, 0, 4) for item in HONOS_ITEMS]
    item_rules = [
        Rule(rule.column, f"case when {q(rule.column)} = '9' then null else {rule.verdict} end",
             rule.detail.replace("is not a whole number from 0 to 4", "is not 0–4 or 9 (not known)"))
        for rule in item_rules
    ]
    problem = "honos_08_problem_type"
    return [
        r.required("assessment_id"),
        r.duplicate("assessment_id", ["assessment_id"]),
        r.required("nhs_number"),
        r.nhs_number("nhs_number", sql_nhs_number_is_valid(q("nhs_number"))),
        r.required("assessment_date"),
        r.date("assessment_date", uk_allowed=True),
        r.free_text("rater_role"),
        *item_rules,
        r.code(problem, tuple("ABCDEFGHIJ")),
        Rule(problem,
             f"case when honos_08 in ('1', '2', '3', '4') and {problem} is null then 'inconsistent_value' "
             f"when honos_08 = '0' and {problem} is not null then 'inconsistent_value' end",
             f"'{problem} must be given exactly when honos_08 is 1-4 (honos_08 = ' "
             "|| coalesce(honos_08, 'empty') || ')'"),
    ]


def _linked_by_nhs_number(site: str) -> list[Rule]:
    # Every row that reaches these rules has a valid NHS number (a row rule), hence a pseudonym.
    return [r.when("nhs_number", "unlinked", "reg.ref_study_id is null",
                   "'a valid NHS number that matches no participant in the register'")]


def _acute_care_rules(site: str) -> list[Rule]:
    start, end = r.any_date("start_date"), r.any_date("end_date")
    return [
        r.required("episode_id"),
        r.duplicate("episode_id", ["episode_id"]),
        r.required("nhs_number"),
        r.nhs_number("nhs_number", sql_nhs_number_is_valid(q("nhs_number"))),
        r.required("episode_type"),
        r.code("episode_type", EPISODE_TYPES),
        r.required("start_date"),
        r.date("start_date", uk_allowed=True),
        r.date("end_date", uk_allowed=True),
        # Both dates may be in either format: compared parsed, never as text.
        r.when("end_date", "date_order", f"{end} < {start}",
               "'end_date ' || end_date || ' is before start_date ' || start_date"),
        r.code("detained", ("0", "1")),
    ]


def _meeting_rules(site: str) -> list[Rule]:
    counts = ("family_members_present", "other_network_members_present", "clinicians_present")
    return [
        r.required("meeting_id"),
        r.duplicate("meeting_id", ["meeting_id"]),
        r.required("study_id"),
        r.required("meeting_date"),
        r.date("meeting_date"),
        r.whole_number("duration_minutes", 1, 480),
        r.code("service_user_present", ("0", "1")),
        *(r.whole_number(c, 0, None) for c in counts),
        r.code("peer_support_worker_present", ("0", "1")),
        *(r.code(k, ("0", "1", "2")) for k in KEY_ELEMENTS),
    ]


def _meeting_cross_rules(site: str) -> list[Rule]:
    return [
        r.when("study_id", "unknown_participant", "reg.ref_study_id is null",
               f"'study_id ' || {r.shown('study_id')} || ' is not in the site''s register'"),
        r.when("meeting_date", "date_order",
               f"reg.ref_consent_date is not null and {r.iso_date('meeting_date')} < reg.ref_consent_date - 90",
               "'meeting_date ' || meeting_date || ' is more than 90 days before consent (' "
               "|| reg.ref_consent_date || ')'"),
    ]


def _dictionary_rules(site: str) -> list[Rule]:
    name = "Variable / Field Name"
    return [r.required(name), r.duplicate(name, [name])]


# In the order they are loaded: every file after the files it reads.
SPECS: dict[str, FileSpec] = {
    spec.file: spec
    for spec in (
        FileSpec("register.csv", "register",
                 ("study_id", "nhs_number", "date_of_birth", "gender", "ethnic_category", "arm",
                  "cluster_id", "consent_date", "withdrawal_date", "withdrawal_type"),
                 ("study_id",), ("nhs_number", "date_of_birth"), _register_rules, participant="study_id",
                 derived=(PSEUDONYM, AGE_AT_CONSENT), columns=_register_columns),
        FileSpec("redcap_dictionary.csv", "redcap_dictionary", DICTIONARY_COLUMNS,
                 ("Variable / Field Name",), (), _dictionary_rules),
        FileSpec("redcap_records.csv", "redcap_records", REDCAP_PLUMBING,
                 ("record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"),
                 (), _redcap_rules, _redcap_cross_rules, link="reg.ref_study_id = h.record_id",
                 reads=("register.csv", "redcap_dictionary.csv"), participant="record_id",
                 columns=_redcap_columns),
        FileSpec("honos.csv", "honos",
                 ("assessment_id", "nhs_number", "assessment_date", "rater_role", *HONOS_ITEMS,
                  "honos_08_problem_type"),
                 ("assessment_id",), ("nhs_number",), _honos_rules, _linked_by_nhs_number,
                 link="reg.ref_pseudonym = h._pseudonym", reads=("register.csv",), derived=(PSEUDONYM,),
                 participant="_pseudonym",
                 columns=_honos_columns),
        FileSpec("network_meetings.csv", "network_meetings",
                 ("meeting_id", "study_id", "meeting_date", "duration_minutes", "service_user_present",
                  "family_members_present", "other_network_members_present", "clinicians_present",
                  "peer_support_worker_present", *KEY_ELEMENTS),
                 ("meeting_id",), (), _meeting_rules, _meeting_cross_rules,
                 link="reg.ref_study_id = h.study_id", reads=("register.csv",), participant="study_id"),
        FileSpec("acute_care.csv", "acute_care",
                 ("episode_id", "nhs_number", "episode_type", "start_date", "end_date", "detained"),
                 ("episode_id",), ("nhs_number",), _acute_care_rules, _linked_by_nhs_number,
                 link="reg.ref_pseudonym = h._pseudonym", reads=("register.csv",), derived=(PSEUDONYM,),
                 participant="_pseudonym",
                 columns=_acute_care_columns),
    )
}
