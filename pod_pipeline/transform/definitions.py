"""What dbt brings to the code location: every seed, model and test as one asset step."""

import dagster as dg

from pod_pipeline.transform.assets import dbt_resource, pod_dbt_models

defs = dg.Definitions(assets=[pod_dbt_models], resources={"dbt": dbt_resource()})
