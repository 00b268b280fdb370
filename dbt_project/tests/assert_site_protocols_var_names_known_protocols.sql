-- var site_protocols (setting POD_SITE_PROTOCOLS, validated there too) names only known protocols.
with

overrides as (

    {{ site_protocol_overrides() }}

)

select overrides.site, overrides.protocol
from overrides
left join {{ ref('protocols') }} as protocols
    on overrides.protocol = protocols.protocol
where protocols.protocol is null
