"""Creates the DynamoDB tables of template.yaml in a local DynamoDB-compatible server.

The definitions are read from the template itself (key schema, attribute definitions,
global secondary indexes, TTL), so local tables cannot drift from the deployed ones.
Each table is named after its logical id (e.g. `SubscriptionsTable`). Existing tables
are left as they are.

    python infra/local_tables.py --endpoint http://127.0.0.1:5000
"""

import argparse
import pathlib
import sys

import boto3
from cfnlint.decode import decode

TEMPLATE = pathlib.Path(__file__).resolve().parent.parent / "template.yaml"


def table_definitions(template_path=TEMPLATE):
    template, problems = decode(str(template_path))
    if template is None:
        sys.exit(f"cannot read {template_path}: {problems}")
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::DynamoDB::Table":
            yield logical_id, resource.get("Properties", {})


def create(client, name, props):
    request = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    indexes = props.get("GlobalSecondaryIndexes")
    if indexes:
        request["GlobalSecondaryIndexes"] = [
            {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")} for index in indexes
        ]
    client.create_table(**request)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="DynamoDB endpoint URL")
    args = parser.parse_args()
    client = boto3.client("dynamodb", endpoint_url=args.endpoint)
    existing = set(client.list_tables()["TableNames"])
    for name, props in table_definitions():
        if name not in existing:
            create(client, name, props)
            print(f"created table {name}")


if __name__ == "__main__":
    main()
