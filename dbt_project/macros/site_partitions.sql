{#- Site partitions (docs/architecture.md, "Site partitions"). Sites, and within a site its
    participants, are independent up to the cohort-level marts, so a participant-level model is
    built incrementally: a build that is not a full refresh rebuilds only the rows of the
    participants whose inputs changed. The pipeline names the sites whose inputs changed in
    audit.dbt_partition_sites and, for each partitioned model, the participants whose rows changed
    in a file the model is built from in audit.dbt_rebuilt_participants, before it starts dbt
    (pod_pipeline/transform/partitions.py). It runs `dbt build --full-refresh` whenever anything
    but the sites' inputs and the reference date changed (the project, the settings, dbt itself)
    or the last build did not finish. When the reference date changed, the models that depend on
    it are rebuilt whole (delete every row, insert every participant's): the pipeline names them
    in audit.dbt_whole_models.

    A partitioned model calls site_partitioned() and reads every participant-level input (staging
    views and other partitioned models) through in_rebuilt_partitions(); seeds and cohort-level
    tables are read whole. Its pre-hook first deletes the rows of the participants it rebuilds,
    among them any participant gone from a register (the pipeline names those for every model).
    The audit tables are named here rather than through ref() or source(): a reference made only
    in an incremental build would have to be declared on every model and mocked in every unit
    test. -#}

{% macro site_partitioned() -%}
    {{- config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_rebuilt_partitions() }}",
        meta={'site_rows': 'participant_id'}
    ) -}}
{%- endmacro %}

{#- Whether this build of the model rebuilds some sites' rows only (never in a unit test, which
    has no relation of its own, nor for a model the build rebuilds whole). -#}
{% macro rebuilds_partitions() -%}
    {{- return(this is not none and is_incremental() and not rebuilt_whole(this.identifier)) -}}
{%- endmacro %}

{#- Whether a build of some sites rebuilds the model `name` whole, for every site: a model that
    depends on the reference date when the date is not the last build's (the pipeline names those
    in audit.dbt_whole_models: pod_pipeline/transform/partitions.py). -#}
{% macro rebuilt_whole(name) -%}
    {%- if not execute or adapter.get_relation(database=target.database, schema='audit', identifier='dbt_whole_models') is none -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set found = run_query("select count(*) from audit.dbt_whole_models where model = '" ~ name | replace("'", "''") ~ "'") -%}
    {{- return(found.columns[0].values()[0] > 0) -}}
{%- endmacro %}

{#- True for a row of a participant this model rebuilds (every participant on a full build). -#}
{% macro in_rebuilt_partitions(column='participant_id') -%}
    {%- if rebuilds_partitions() -%}
        {{ column }} in ({{ rebuilt_participants(this.identifier) }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The same condition for a typed staging view (stg_redcap__records): the rebuilt participants
    written out as a list of literals, up to listed_participants_limit() of them, else as
    in_rebuilt_partitions() writes it. DuckDB moves a filter on a list of values below the view's
    projection, into the scan of the raw table, so only the rebuilt participants' rows are typed;
    a subquery becomes a semi join above it, after every row of the site has been typed (without
    the projection_placement optimizer, which dbt's profile turns off). For a tenth of a site at
    1,000,000 participants, int_instrument_scales_summed typed 470,117 rows instead of 43,688 and
    took 3.3 s instead of 2.15 s. The list is of study ids (pseudonymous), in the compiled SQL of a
    partial build under dbt_target. One query reads them, at most the limit and one more; while dbt
    parses (and sqlfluff lints), nothing is queried. -#}
{% macro in_rebuilt_partitions_listed(column='participant_id') -%}
    {%- if execute and rebuilds_partitions() -%}
        {%- set limit = listed_participants_limit() -%}
        {%- set ids = run_query(rebuilt_participants(this.identifier) ~ " order by participant_id limit "
                                ~ (limit + 1)).columns[0].values() -%}
    {%- endif -%}
    {%- if ids is defined and ids | length <= limit -%}
        {{ column }} in (
        {%- for id in ids -%}
            '{{ id | replace("'", "''") }}'{{ ", " if not loop.last }}
        {%- else -%}
            null
        {%- endfor -%}
        )
    {%- else -%}
        {{ in_rebuilt_partitions(column) }}
    {%- endif -%}
{%- endmacro %}

{#- Past this many rebuilt participants (a site's first export, say), the list would cost more to
    plan than typing the site's rows; a var, so that a test can reach the other branch. -#}
{% macro listed_participants_limit() -%}
    {{- return(var('listed_participants_limit', 50000) | int) -}}
{%- endmacro %}

{#- SQL: the participants whose rows of the model `name` this build rebuilds. -#}
{% macro rebuilt_participants(name) -%}
    select participant_id from audit.dbt_rebuilt_participants where model = '{{ name | replace("'", "''") }}'
{%- endmacro %}

{#- Written in a CTE's header, `name as {{ materialized_on_partial_build() }} (`: on a build of some
    sites, DuckDB computes the CTE first, so its in_rebuilt_partitions() filter is applied where
    its input is scanned. Left to choose, DuckDB's optimizer can join the rebuilt participants in
    only after a large join, building that join's hash table on every site's rows (outcome_scores
    for one site at 1,000,000 participants: 6.1 s, against 1.7 s with the CTE computed first). On
    a full build there is no filter, and computing the CTE first would only copy its rows
    (outcome_scores: 19.3 s against 16.9 s), so it is left to the optimizer. -#}
{% macro materialized_on_partial_build() -%}
    {%- if rebuilds_partitions() %}materialized{% endif -%}
{%- endmacro %}

{#- Every row of a model rebuilt whole; else the rows of the participants it rebuilds (among
    them any participant gone from a register: a change of a register reaches every partitioned
    model). Reading only the participants named, not every participant of the registers, makes
    the delete a tenth of the cost on a table of tens of millions of rows. -#}
{% macro delete_rebuilt_partitions() -%}
    {%- if this is not none and is_incremental() -%}
        delete from {{ this }}
        {%- if not rebuilt_whole(this.identifier) %}
        where participant_id in ({{ rebuilt_participants(this.identifier) }})
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- dbt's own get_where_subquery (a test's `where` config), overridden so that on a build of some
    sites an error-severity test of a model whose rows belong to sites reads the rebuilt rows
    only. The model (or source) says how its rows belong to a site in meta.site_rows:
    'participant_id' (every partitioned model, through site_partitioned(): the participants it
    rebuilt) or 'site' (a raw table that ingestion rebuilds site by site, and a staging view of
    one, whose other sites' rows are those the last build tested, unchanged: the sites named).
    Every such model's grain, and every key a test of such a source holds unique, includes the
    participant or the site, so the rows not read, tested by the build that made them, can
    neither have changed nor clash with the rebuilt ones (and a pipeline's build that names no
    site reads none of them). A full refresh, a warning (which must keep reporting every row it
    finds), a source or model without meta.site_rows, a model the build rebuilds whole, and dbt
    run by hand after the pipeline's build finished (no site named) test every row. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set rebuilt = rows_of_rebuilt_sites() -%}
    {%- if rebuilt -%}
        {%- do conditions.append(rebuilt) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- The condition a test of a site-partitioned model adds on a build of some sites, or ''. -#}
{% macro rows_of_rebuilt_sites() -%}
    {%- if not execute or flags.FULL_REFRESH or (config.get('severity', 'error') | lower) != 'error' -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set tested = graph.nodes.get(model.get('attached_node') or '') -%}
    {%- set parents = model.get('depends_on', {}).get('nodes', []) -%}
    {%- if not tested and parents | length == 1 and parents[0].startswith('source.') -%}
        {%- set tested = graph.sources.get(parents[0]) -%}
    {%- endif -%}
    {%- set by = (tested.config.meta or {}).get('site_rows') if tested else none -%}
    {%- if by not in ('participant_id', 'site') or rebuilt_whole(tested.name) -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set named = named_sites() -%}
    {%- if named is none -%}
        {{- return('') -}}
    {%- endif -%}
    {%- if named | length == 0 -%}
        {{- return('false') -}}
    {%- endif -%}
    {#- The sites as literals, so that the filter reaches the scan of a view's table. -#}
    {%- if by == 'site' -%}
        {{- return('site in (' ~ sql_strings(named) ~ ')') -}}
    {%- endif -%}
    {{- return('participant_id in (' ~ rebuilt_participants(tested.name) ~ ')') -}}
{%- endmacro %}

{#- A singular test's condition on the rows it reads of the site-partitioned models `names`: on a
    build of some sites, the rows of the participants any of them rebuilt, as get_where_subquery
    scopes a generic test (the other rows are as the build that made them left and tested them;
    a participant whose register rows changed, a withdrawal among them, is rebuilt in every
    model). Every row on a full refresh, when one of the models is rebuilt whole, and when dbt is
    run by hand after the pipeline's build (no site named); no row in a pipeline's build that
    names no site. With several models named, the rows of the participants any of them rebuilt:
    a test comparing two models reads the same participants on both sides. -#}
{% macro in_rebuilt_rows_of(names, column='participant_id') -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- for name in names -%}
        {%- if rebuilt_whole(name) -%}
            {{- return('true') -}}
        {%- endif -%}
    {%- endfor -%}
    {%- set named = named_sites() -%}
    {%- if named is none -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- if named | length == 0 -%}
        {{- return('false') -}}
    {%- endif -%}
    {{- return(column ~ ' in (select participant_id from audit.dbt_rebuilt_participants where model in ('
               ~ sql_strings(names) ~ '))') -}}
{%- endmacro %}

{#- The sites the build names in audit.dbt_partition_sites, for the tests' scoping: none when a
    test reads every row (no such table, or no site named and dbt run by hand); an empty list in
    the pipeline's build (which sets POD_DBT_PIPELINE_BUILD) when no site's inputs changed: no row
    of a partitioned model was rebuilt, so none is read. -#}
{% macro named_sites() -%}
    {%- if adapter.get_relation(database=target.database, schema='audit', identifier='dbt_partition_sites') is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set named = run_query('select site from audit.dbt_partition_sites order by site').columns[0].values() -%}
    {%- if named | length == 0 and not env_var('POD_DBT_PIPELINE_BUILD', '') -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(named) -}}
{%- endmacro %}

{#- SQL: the values as a comma-separated list of string literals. -#}
{% macro sql_strings(values) -%}
    {%- set quoted = [] -%}
    {%- for value in values -%}
        {%- do quoted.append("'" ~ value | replace("'", "''") ~ "'") -%}
    {%- endfor -%}
    {{- return(quoted | join(', ')) -}}
{%- endmacro %}
