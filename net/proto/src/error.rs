//! Errors: [`ProtoError`] (a protocol violation by the peer: the connection is closed after an
//! error frame) and [`ErrorCode`]/[`ErrorResponse`] (a request that failed: etcd's rpctypes errors
//! with their exact messages and gRPC status codes, so a gRPC front end maps them 1:1).

use rkyv::{Archive, Deserialize, Serialize};

/// A protocol violation found while decoding untrusted bytes (D1). Never a panic: the server
/// answers with [`ProtoError::to_error_response`] in an error frame and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The frame does not start with the magic bytes.
    BadMagic(u32),
    /// The frame's protocol version is not one this build speaks.
    UnsupportedVersion(u8),
    /// Flag bits this version does not define are set.
    UnknownFlags(u8),
    /// The reserved header bytes are not zero.
    ReservedNotZero,
    /// The payload length exceeds the decoder's limit (checked before any allocation).
    PayloadTooLarge {
        /// Length announced by the header.
        len: u32,
        /// The decoder's limit.
        max: u32,
    },
    /// The CRC32C stored in the header does not match the frame's bytes.
    ChecksumMismatch {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC computed over the bytes received.
        computed: u32,
    },
    /// The opcode is not in this version's table.
    UnknownOpcode(u16),
    /// The padding after the payload is not zero.
    BadPadding,
    /// The opcode is valid but not expected here (a response sent to the server, or vice versa).
    UnexpectedOpcode(u16),
    /// The `MORE` flag is set on an opcode that never streams in that direction (only
    /// LeaseKeepAlive requests, and Watch/LeaseKeepAlive/Snapshot responses, may carry it).
    UnexpectedMore(u16),
    /// The payload's message kind does not match the frame's opcode.
    OpcodeMismatch {
        /// Opcode in the header.
        opcode: u16,
        /// Opcode implied by the archived payload.
        payload: u16,
    },
    /// The payload failed rkyv validation (bounds, pointers, enum tags, UTF-8, nesting depth).
    InvalidPayload(String),
    /// The payload slice is not aligned for zero-copy access (copy it into an aligned buffer).
    Misaligned(usize),
    /// A message could not be encoded (too large for the 32-bit length, or serializer failure).
    Encode(String),
    /// The decoder already returned an error; the connection must be closed.
    Poisoned,
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::BadMagic(x) => write!(f, "bad magic {x:#010x}"),
            ProtoError::UnsupportedVersion(x) => write!(f, "unsupported protocol version {x}"),
            ProtoError::UnknownFlags(x) => write!(f, "unknown flags {x:#04x}"),
            ProtoError::ReservedNotZero => write!(f, "reserved header bytes are not zero"),
            ProtoError::PayloadTooLarge { len, max } => {
                write!(f, "payload length {len} exceeds the limit {max}")
            }
            ProtoError::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            ProtoError::UnknownOpcode(x) => write!(f, "unknown opcode {x:#06x}"),
            ProtoError::BadPadding => write!(f, "frame padding is not zero"),
            ProtoError::UnexpectedMore(x) => {
                write!(f, "flag MORE on opcode {x:#06x}, which does not stream")
            }
            ProtoError::UnexpectedOpcode(x) => {
                write!(f, "unexpected opcode {x:#06x} in this direction")
            }
            ProtoError::OpcodeMismatch { payload, opcode } => write!(
                f,
                "payload is a {payload:#06x} message but the frame's opcode is {opcode:#06x}"
            ),
            ProtoError::InvalidPayload(x) => write!(f, "invalid payload: {x}"),
            ProtoError::Misaligned(x) => write!(f, "payload is not aligned to {x} bytes"),
            ProtoError::Encode(x) => write!(f, "cannot encode: {x}"),
            ProtoError::Poisoned => write!(f, "decoder is poisoned by an earlier error"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl ProtoError {
    /// The error response the server sends before closing the connection.
    pub fn to_error_response(&self) -> ErrorResponse {
        ErrorResponse {
            code: ErrorCode::MalformedFrame as u16,
            message: format!("{}: {self}", ErrorCode::MalformedFrame.message()),
        }
    }
}

/// gRPC status codes (numeric values as in grpc's `codes` package).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GrpcCode {
    /// OK = 0.
    Ok = 0,
    /// Canceled = 1.
    Canceled = 1,
    /// Unknown = 2.
    Unknown = 2,
    /// InvalidArgument = 3.
    InvalidArgument = 3,
    /// DeadlineExceeded = 4.
    DeadlineExceeded = 4,
    /// NotFound = 5.
    NotFound = 5,
    /// AlreadyExists = 6.
    AlreadyExists = 6,
    /// PermissionDenied = 7.
    PermissionDenied = 7,
    /// ResourceExhausted = 8.
    ResourceExhausted = 8,
    /// FailedPrecondition = 9.
    FailedPrecondition = 9,
    /// Aborted = 10.
    Aborted = 10,
    /// OutOfRange = 11.
    OutOfRange = 11,
    /// Unimplemented = 12.
    Unimplemented = 12,
    /// Internal = 13.
    Internal = 13,
    /// Unavailable = 14.
    Unavailable = 14,
    /// DataLoss = 15.
    DataLoss = 15,
    /// Unauthenticated = 16.
    Unauthenticated = 16,
}

macro_rules! error_codes {
    ($($variant:ident = $code:expr, $grpc:ident, $msg:literal;)*) => {
        /// etcd's client-visible errors (api/v3rpc/rpctypes/error.go), plus keel's own
        /// [`ErrorCode::MalformedFrame`]. The numeric value is keel's wire code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $(#[doc = $msg] $variant = $code,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code with this wire value.
            pub fn from_u16(code: u16) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }

            /// The message exactly as etcd's server sends it.
            pub fn message(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $msg,)*
                }
            }

            /// The gRPC status code etcd sends with it.
            pub fn grpc_code(self) -> GrpcCode {
                match self {
                    $(ErrorCode::$variant => GrpcCode::$grpc,)*
                }
            }
        }
    };
}

error_codes! {
    EmptyKey = 1, InvalidArgument, "etcdserver: key is not provided";
    KeyNotFound = 2, InvalidArgument, "etcdserver: key not found";
    ValueProvided = 3, InvalidArgument, "etcdserver: value is provided";
    LeaseProvided = 4, InvalidArgument, "etcdserver: lease is provided";
    TtlZero = 5, InvalidArgument, "etcdserver: ttl is 0";
    TooManyOps = 6, InvalidArgument, "etcdserver: too many operations in txn request";
    DuplicateKey = 7, InvalidArgument, "etcdserver: duplicate key given in txn request";
    Compacted = 8, OutOfRange, "etcdserver: mvcc: required revision has been compacted";
    FutureRev = 9, OutOfRange, "etcdserver: mvcc: required revision is a future revision";
    NoSpace = 10, ResourceExhausted, "etcdserver: mvcc: database space exceeded";
    LeaseNotFound = 20, NotFound, "etcdserver: requested lease not found";
    LeaseExist = 21, FailedPrecondition, "etcdserver: lease already exists";
    LeaseTtlTooLarge = 22, OutOfRange, "etcdserver: too large lease TTL";
    MemberExist = 30, FailedPrecondition, "etcdserver: member ID already exist";
    PeerUrlExist = 31, FailedPrecondition, "etcdserver: Peer URLs already exists";
    MemberNotEnoughStarted = 32, FailedPrecondition,
        "etcdserver: re-configuration failed due to not enough started members";
    MemberBadUrls = 33, InvalidArgument, "etcdserver: given member URLs are invalid";
    MemberNotFound = 34, NotFound, "etcdserver: member not found";
    MemberNotLearner = 35, FailedPrecondition, "etcdserver: can only promote a learner member";
    LearnerNotReady = 36, FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader";
    TooManyLearners = 37, FailedPrecondition, "etcdserver: too many learner members in cluster";
    RequestTooLarge = 40, InvalidArgument, "etcdserver: request is too large";
    TooManyRequests = 41, ResourceExhausted, "etcdserver: too many requests";
    RootUserNotExist = 50, FailedPrecondition, "etcdserver: root user does not exist";
    RootRoleNotExist = 51, FailedPrecondition, "etcdserver: root user does not have root role";
    UserAlreadyExist = 52, FailedPrecondition, "etcdserver: user name already exists";
    UserEmpty = 53, InvalidArgument, "etcdserver: user name is empty";
    UserNotFound = 54, FailedPrecondition, "etcdserver: user name not found";
    RoleAlreadyExist = 55, FailedPrecondition, "etcdserver: role name already exists";
    RoleNotFound = 56, FailedPrecondition, "etcdserver: role name not found";
    RoleEmpty = 57, InvalidArgument, "etcdserver: role name is empty";
    AuthFailed = 58, InvalidArgument,
        "etcdserver: authentication failed, invalid user ID or password";
    PermissionDenied = 59, PermissionDenied, "etcdserver: permission denied";
    RoleNotGranted = 60, FailedPrecondition, "etcdserver: role is not granted to the user";
    PermissionNotGranted = 61, FailedPrecondition,
        "etcdserver: permission is not granted to the role";
    AuthNotEnabled = 62, FailedPrecondition, "etcdserver: authentication is not enabled";
    InvalidAuthToken = 63, Unauthenticated, "etcdserver: invalid auth token";
    InvalidAuthMgmt = 64, InvalidArgument, "etcdserver: invalid auth management";
    NoLeader = 70, Unavailable, "etcdserver: no leader";
    NotLeader = 71, FailedPrecondition, "etcdserver: not leader";
    LeaderChanged = 72, Unavailable, "etcdserver: leader changed";
    NotCapable = 73, Unavailable, "etcdserver: not capable";
    Stopped = 74, Unavailable, "etcdserver: server stopped";
    Timeout = 75, Unavailable, "etcdserver: request timed out";
    TimeoutDueToLeaderFail = 76, Unavailable,
        "etcdserver: request timed out, possibly due to previous leader failure";
    TimeoutDueToConnectionLost = 77, Unavailable,
        "etcdserver: request timed out, possibly due to connection lost";
    Unhealthy = 78, Unavailable, "etcdserver: unhealthy cluster";
    Corrupt = 79, DataLoss, "etcdserver: corrupt cluster";
    NotSupportedForLearner = 80, Unavailable, "etcdserver: rpc not supported for learner";
    BadLeaderTransferee = 81, FailedPrecondition, "etcdserver: bad leader transferee";
    ClusterVersionUnavailable = 90, Unavailable,
        "etcdserver: cluster version not found during downgrade";
    WrongDowngradeVersionFormat = 91, InvalidArgument,
        "etcdserver: wrong downgrade target version format";
    InvalidDowngradeTargetVersion = 92, InvalidArgument,
        "etcdserver: invalid downgrade target version";
    DowngradeInProcess = 93, FailedPrecondition,
        "etcdserver: cluster has a downgrade job in progress";
    NoInflightDowngrade = 94, FailedPrecondition, "etcdserver: no inflight downgrade job";
    MalformedFrame = 1000, InvalidArgument, "keel: malformed frame";
}

/// `cancel_reason` of a `WatchResponse` refusing a create whose client-chosen `watch_id` is already
/// in use on the connection (etcd's mvcc `ErrWatcherDuplicateID`; etcd sends it as a cancel, not as
/// an rpctypes error).
pub const WATCH_CANCEL_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// `cancel_reason` when a watch's range is empty (etcd's mvcc `ErrEmptyWatcherRange`).
pub const WATCH_CANCEL_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// The payload of an error frame: a failed request (or a protocol violation, code
/// [`ErrorCode::MalformedFrame`]). `code` stays a raw `u16` so a client can carry codes newer
/// than its own table.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct ErrorResponse {
    /// keel's wire code ([`ErrorCode`] as `u16`).
    pub code: u16,
    /// The message (etcd's exact text; may carry detail after it for `MalformedFrame`).
    pub message: String,
}

impl ErrorResponse {
    /// The error response for `code` with etcd's message.
    pub fn new(code: ErrorCode) -> ErrorResponse {
        ErrorResponse {
            code: code as u16,
            message: code.message().to_owned(),
        }
    }

    /// The known code, or `None` if it is not in this build's table.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_u16(self.code)
    }

    /// The gRPC status code (`Unknown` for a code not in this build's table).
    pub fn grpc_code(&self) -> GrpcCode {
        self.error_code()
            .map_or(GrpcCode::Unknown, ErrorCode::grpc_code)
    }
}

impl ArchivedErrorResponse {
    /// The known code, or `None` if it is not in this build's table.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_u16(self.code.to_native())
    }
}
