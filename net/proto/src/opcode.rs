//! Opcodes: which message a frame carries. The low 15 bits name the RPC ([`Method`]); bit 15 is set
//! on responses; `0xFFFF` is the error frame. The table is in net/PROTOCOL.md.

use crate::messages::{ArchivedRequest, ArchivedResponse, Request, Response};

/// Bit 15 of an opcode: set on server → client frames.
pub const RESPONSE_BIT: u16 = 0x8000;
/// The opcode of an error frame (payload: `Response::Error`).
pub const ERROR_OPCODE: u16 = 0xFFFF;

macro_rules! methods {
    ($($variant:ident = $code:expr, $rpc:literal;)*) => {
        /// The RPC a frame belongs to (etcd service.method).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Method {
            $(#[doc = $rpc] $variant = $code,)*
        }

        impl Method {
            /// Every method, in opcode order.
            pub const ALL: &'static [Method] = &[$(Method::$variant,)*];

            /// The method with this code (the opcode without its response bit).
            pub fn from_code(code: u16) -> Option<Method> {
                match code {
                    $($code => Some(Method::$variant),)*
                    _ => None,
                }
            }

            /// etcd's name for it, `Service.Method`.
            pub fn rpc_name(self) -> &'static str {
                match self {
                    $(Method::$variant => $rpc,)*
                }
            }
        }

        impl Request {
            /// The method of this request.
            pub fn method(&self) -> Method {
                match self {
                    $(Request::$variant(_) => Method::$variant,)*
                }
            }
        }

        impl ArchivedRequest {
            /// The method of this request.
            pub fn method(&self) -> Method {
                match self {
                    $(ArchivedRequest::$variant(_) => Method::$variant,)*
                }
            }
        }

        impl Response {
            /// The opcode of the frame carrying this response.
            pub fn opcode(&self) -> Opcode {
                match self {
                    $(Response::$variant(_) => Opcode::Response(Method::$variant),)*
                    Response::Error(_) => Opcode::Error,
                }
            }
        }

        impl ArchivedResponse {
            /// The opcode of the frame carrying this response.
            pub fn opcode(&self) -> Opcode {
                match self {
                    $(ArchivedResponse::$variant(_) => Opcode::Response(Method::$variant),)*
                    ArchivedResponse::Error(_) => Opcode::Error,
                }
            }
        }
    };
}

methods! {
    Range = 0x0001, "KV.Range";
    Put = 0x0002, "KV.Put";
    DeleteRange = 0x0003, "KV.DeleteRange";
    Txn = 0x0004, "KV.Txn";
    Compact = 0x0005, "KV.Compact";
    Watch = 0x0010, "Watch.Watch";
    LeaseGrant = 0x0020, "Lease.LeaseGrant";
    LeaseRevoke = 0x0021, "Lease.LeaseRevoke";
    LeaseKeepAlive = 0x0022, "Lease.LeaseKeepAlive";
    LeaseTimeToLive = 0x0023, "Lease.LeaseTimeToLive";
    LeaseLeases = 0x0024, "Lease.LeaseLeases";
    MemberAdd = 0x0030, "Cluster.MemberAdd";
    MemberRemove = 0x0031, "Cluster.MemberRemove";
    MemberUpdate = 0x0032, "Cluster.MemberUpdate";
    MemberList = 0x0033, "Cluster.MemberList";
    MemberPromote = 0x0034, "Cluster.MemberPromote";
    Alarm = 0x0040, "Maintenance.Alarm";
    Status = 0x0041, "Maintenance.Status";
    Defragment = 0x0042, "Maintenance.Defragment";
    Hash = 0x0043, "Maintenance.Hash";
    HashKv = 0x0044, "Maintenance.HashKV";
    Snapshot = 0x0045, "Maintenance.Snapshot";
    MoveLeader = 0x0046, "Maintenance.MoveLeader";
}

/// A frame's opcode, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// Client → server request.
    Request(Method),
    /// Server → client response (or stream item) for the method.
    Response(Method),
    /// Server → client error (ends the request or stream).
    Error,
}

impl Opcode {
    /// The 16-bit wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Opcode::Request(m) => m as u16,
            Opcode::Response(m) => m as u16 | RESPONSE_BIT,
            Opcode::Error => ERROR_OPCODE,
        }
    }

    /// Decodes a wire value; `None` for an unknown opcode.
    pub fn from_u16(raw: u16) -> Option<Opcode> {
        if raw == ERROR_OPCODE {
            return Some(Opcode::Error);
        }
        let method = Method::from_code(raw & !RESPONSE_BIT)?;
        Some(if raw & RESPONSE_BIT != 0 {
            Opcode::Response(method)
        } else {
            Opcode::Request(method)
        })
    }

    /// Whether a frame with this opcode may carry `FLAG_MORE` (more frames follow on its id):
    /// LeaseKeepAlive requests (the client keeps its keepalive stream open), and Watch,
    /// LeaseKeepAlive and Snapshot responses (server streams). Never an error frame.
    pub fn may_stream(self) -> bool {
        match self {
            Opcode::Request(m) => m == Method::LeaseKeepAlive,
            Opcode::Response(m) => {
                matches!(m, Method::Watch | Method::LeaseKeepAlive | Method::Snapshot)
            }
            Opcode::Error => false,
        }
    }

    /// Whether the server sends this opcode.
    pub fn is_from_server(self) -> bool {
        !matches!(self, Opcode::Request(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stream_opcodes_may_stream() {
        let streaming: Vec<_> = Method::ALL
            .iter()
            .flat_map(|&m| [Opcode::Request(m), Opcode::Response(m)])
            .filter(|o| o.may_stream())
            .collect();
        assert_eq!(
            streaming,
            [
                Opcode::Response(Method::Watch),
                Opcode::Request(Method::LeaseKeepAlive),
                Opcode::Response(Method::LeaseKeepAlive),
                Opcode::Response(Method::Snapshot),
            ]
        );
        assert!(!Opcode::Error.may_stream());
    }
}
