-- Exactly one protocol is the default: with none, a site no seed or setting names would have no
-- timepoints at all; with two, its participants would be scheduled twice.
select count(*) as n_default_protocols
from {{ ref('protocols') }}
where is_default
having count(*) <> 1
