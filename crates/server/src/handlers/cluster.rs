//! DescribeCluster and FindCoordinator: this one node is the cluster, its controller,
//! and every group's coordinator. Transactions have no coordinator here: a
//! FindCoordinator for one answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED with a message
//! that says so, which makes a transactional client stop instead of retrying.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest,
    FindCoordinatorResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Ctx, Session};
use crate::config::NODE_ID;

/// Kafka's `CLUSTER_ACTION`, `DESCRIBE`, `ALTER`, `DESCRIBE_CONFIGS`, `ALTER_CONFIGS`,
/// `CREATE`: everything, since there are no ACLs.
const CLUSTER_OPERATIONS: i32 = (1 << 4) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11);

/// FindCoordinator's key type for a transactional id.
const TRANSACTION: i8 = 1;

pub fn describe(
    ctx: &Ctx,
    session: &Session,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(StrBytes::from_string(ctx.cluster_id.clone()))
        .with_controller_id(BrokerId(NODE_ID))
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(NODE_ID))
                .with_host(StrBytes::from_string(session.local.ip().to_string()))
                .with_port(i32::from(session.local.port())),
        ])
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS
        } else {
            i32::MIN
        })
}

pub fn find_coordinator(
    session: &Session,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = StrBytes::from_string(session.local.ip().to_string());
    let port = i32::from(session.local.port());
    let refused = req.key_type == TRANSACTION;
    let (code, message) = if refused {
        (
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            Some(StrBytes::from_static_str(
                "transactions are not supported by millrace serve",
            )),
        )
    } else {
        (0, None)
    };
    let node = if refused { -1 } else { NODE_ID };
    if version < 4 {
        return FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message(message)
            .with_node_id(BrokerId(node))
            .with_host(if refused { StrBytes::default() } else { host })
            .with_port(if refused { -1 } else { port });
    }
    let coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|key| {
            Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(node))
                .with_host(if refused {
                    StrBytes::default()
                } else {
                    host.clone()
                })
                .with_port(if refused { -1 } else { port })
                .with_error_code(code)
                .with_error_message(message.clone())
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
