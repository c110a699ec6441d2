//! InitProducerId: a new producer id at epoch 0 for an idempotent producer. A
//! transactional producer (one with a transactional id) is refused with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED and a message saying why: this server does not
//! implement transactions, and that error makes clients stop instead of retrying.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Ctx;

pub fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let none = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_ongoing_txn_producer_id(ProducerId(-1))
        .with_ongoing_txn_producer_epoch(-1);
    if req.transactional_id.is_some() {
        tracing::info!("refused a transactional producer: transactions are not supported");
        return none.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    none.with_producer_id(ProducerId(ctx.hub.producers().new_producer_id()))
        .with_producer_epoch(0)
}
