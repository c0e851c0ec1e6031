//! The `-grid` requests: the controller's grids and one grid's attributes.

use xgrid_protocol::messages::{ClientRequest, GridQuery, ListQuery};

pub(super) fn list() -> ClientRequest {
    ClientRequest::GridList(ListQuery::default())
}

pub(super) fn attributes(grid: &str) -> ClientRequest {
    ClientRequest::GridAttributes(GridQuery {
        grid_identifier: grid.to_string(),
        subscription: None,
    })
}
