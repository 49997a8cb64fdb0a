//! DescribeCluster (v0–v2): the live brokers, the controller (the
//! metadata group's leader) and the cluster id, as Metadata shows them.

use super::{Broker, CLUSTER_ID};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

pub fn handle(
    broker: &Broker,
    request: &DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let live = broker.shared.live_nodes();
    let brokers = broker
        .peers
        .iter()
        .filter(|p| live.contains(&p.id))
        .filter_map(|p| {
            let (host, port) = broker.endpoint(p.id)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(p.id as i32))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(p.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    let controller = broker.shared.controller().unwrap_or(broker.node) as i32;
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_static_str(CLUSTER_ID))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
