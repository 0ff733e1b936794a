//! `order-summary`: one row per order with its customer, item count, total
//! and status — the read model a shop's order list is served from.
//!
//! Every write is guarded by `last_updated_position`, so applying an event a
//! second time changes nothing.

mod summary;

pub use summary::*;

refract_sdk::export_projection!(OrderSummary);

#[cfg(test)]
mod tests {
    use super::*;
    use refract_sdk::Event;
    use refract_sdk::testing::{ProjectionTest, event};
    use serde_json::json;

    fn placed(pos: u64, order: &str) -> Event {
        event(
            pos,
            order,
            1,
            "OrderPlaced",
            json!({
                "customer": {"id": "ada", "name": "Ada"},
                "items": [{"product_id": "p1", "quantity": 2, "price": 5.0}]
            }),
        )
    }

    #[test]
    fn lifecycle_updates_one_row() {
        let t = ProjectionTest::<OrderSummary>::new();
        t.apply(&[
            placed(1, "order-1"),
            event(2, "order-1", 2, "ItemAdded", json!({"product_id": "p2", "quantity": 1, "price": 2.5})),
            event(3, "order-1", 3, "OrderPaid", json!({"payment_method": "card"})),
            event(4, "order-1", 4, "OrderShipped", json!({"carrier": "dhl"})),
        ])
        .unwrap();
        let r = t.db().query("SELECT * FROM order_summaries", &[]).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r.get::<String>(0, "customer").unwrap(), "ada");
        assert_eq!(r.get::<i64>(0, "item_count").unwrap(), 3);
        assert_eq!(r.get::<f64>(0, "total").unwrap(), 12.5);
        assert_eq!(r.get::<String>(0, "status").unwrap(), "shipped");
        assert_eq!(r.get::<i64>(0, "last_updated_position").unwrap(), 4);
    }

    #[test]
    fn replaying_an_event_changes_nothing() {
        let t = ProjectionTest::<OrderSummary>::new();
        let add =
            event(2, "order-1", 2, "ItemAdded", json!({"product_id": "p", "quantity": 1, "price": 1.0}));
        t.apply(&[placed(1, "order-1"), add.clone()]).unwrap();
        t.apply(&[add]).unwrap();
        let r = t.db().query("SELECT item_count FROM order_summaries", &[]).unwrap();
        assert_eq!(r.get::<i64>(0, "item_count").unwrap(), 3);
    }

    #[test]
    fn bad_data_fails_the_batch_and_names_the_event() {
        let t = ProjectionTest::<OrderSummary>::new();
        let bad = event(2, "order-2", 1, "OrderPlaced", json!({"items": []}));
        let err = t.apply(&[placed(1, "order-1"), bad]).unwrap_err();
        assert!(err.message().contains("event 2"), "{err}");
        assert!(err.message().contains("customer"), "{err}");
        let r = t.db().query("SELECT * FROM order_summaries", &[]).unwrap();
        assert!(r.is_empty(), "the whole batch must roll back");
    }
}
