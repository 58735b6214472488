//! foca's codec for shoal: postcard, as foca's own `PostcardCodec` writes it (the same bytes,
//! v0.1.0's wire format), with identities decoded through the node's context.
//!
//! Owns `SwimCodec`: every identity a SWIM datagram names is checked here, once (a valid
//! name, a generation no further in the future than the node allows) and taken from the
//! node's `Shared` context, so equal identities share one allocation. Must not keep any state
//! but the context, the generation limit the node sets before each datagram, and a scratch
//! buffer; must not decide anything about membership.

use crate::identity::{NodeId, WireId};
use crate::shared::Shared;
use bytes::{Buf, BufMut};
use foca::{Header, Member, Message};
use std::sync::Arc;

/// Why a SWIM payload did not decode (or encode).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error(transparent)]
    Postcard(#[from] postcard::Error),
    #[error("identity refused: {0}")]
    Identity(String),
}

/// foca's codec (see the module doc).
pub(crate) struct SwimCodec {
    shared: Arc<Shared>,
    /// Identities of a later generation are refused (the node sets it to its clock plus a
    /// margin before handing foca a datagram).
    pub(crate) max_generation: u64,
}

impl SwimCodec {
    pub(crate) fn new(shared: Arc<Shared>) -> SwimCodec {
        SwimCodec {
            shared,
            max_generation: u64::MAX,
        }
    }

    fn id(&self, w: &WireId<'_>) -> Result<NodeId, CodecError> {
        self.shared
            .resolve(w, self.max_generation)
            .map_err(CodecError::Identity)
    }
}

/// Writes into foca's buffer exactly as foca's `PostcardCodec` does, including when the
/// buffer runs out (single bytes are written while they fit, slices only whole): foca then
/// truncates its buffer but not the limit it put on it, so what a failed write used stays
/// used, and a datagram's contents depend on it. Same writes, same datagrams as v0.1.0.
struct WrappedBuf<B>(B);

impl<B: BufMut> postcard::ser_flavors::Flavor for WrappedBuf<B> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.0.has_remaining_mut() {
            self.0.put_u8(data);
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.0.remaining_mut() >= data.len() {
            self.0.put_slice(data);
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

/// The decoded header's identities, resolved.
fn message(
    m: Message<WireId<'_>>,
    id: impl Fn(&WireId<'_>) -> Result<NodeId, CodecError>,
) -> Result<Message<NodeId>, CodecError> {
    Ok(match m {
        Message::Ping(n) => Message::Ping(n),
        Message::Ack(n) => Message::Ack(n),
        Message::PingReq {
            target,
            probe_number,
        } => Message::PingReq {
            target: id(&target)?,
            probe_number,
        },
        Message::IndirectPing {
            origin,
            probe_number,
        } => Message::IndirectPing {
            origin: id(&origin)?,
            probe_number,
        },
        Message::IndirectAck {
            target,
            probe_number,
        } => Message::IndirectAck {
            target: id(&target)?,
            probe_number,
        },
        Message::ForwardedAck {
            origin,
            probe_number,
        } => Message::ForwardedAck {
            origin: id(&origin)?,
            probe_number,
        },
        Message::Announce => Message::Announce,
        Message::Feed => Message::Feed,
        Message::Gossip => Message::Gossip,
        Message::Broadcast => Message::Broadcast,
        Message::TurnUndead => Message::TurnUndead,
    })
}

impl foca::Codec<NodeId> for SwimCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Ok(postcard::serialize_with_flavor(header, WrappedBuf(buf))?)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        let remaining = buf.remaining();
        // foca hands a contiguous buffer.
        let (h, rest) = postcard::take_from_bytes::<Header<WireId<'_>>>(buf.chunk())?;
        let used = remaining - rest.len();
        let header = Header {
            src: self.id(&h.src)?,
            src_incarnation: h.src_incarnation,
            dst: self.id(&h.dst)?,
            message: message(h.message, |w| self.id(w))?,
        };
        buf.advance(used);
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Ok(postcard::serialize_with_flavor(member, WrappedBuf(buf))?)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        let remaining = buf.remaining();
        let (m, rest) = postcard::take_from_bytes::<Member<WireId<'_>>>(buf.chunk())?;
        let used = remaining - rest.len();
        let member = Member::new(self.id(m.id())?, m.incarnation(), m.state());
        buf.advance(used);
        Ok(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{Codec, PostcardCodec, State};
    use std::net::SocketAddr;

    /// The bytes of v0.1.0: foca's `PostcardCodec` over the plain wire shape of an identity.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Plain {
        name: String,
        addr: SocketAddr,
        generation: u64,
    }

    fn plain(id: &NodeId) -> Plain {
        Plain {
            name: id.name().to_string(),
            addr: id.addr(),
            generation: id.generation(),
        }
    }

    #[test]
    fn same_bytes_as_foca_postcard_codec_and_identities_shared() {
        let shared = Shared::new(5);
        let a = shared.id("a", "10.0.0.1:1".parse().unwrap(), 7);
        let b = shared.id("b", "[::1]:2".parse().unwrap(), 9);
        let mut codec = SwimCodec::new(shared.clone());
        for message in [
            Message::Ping(3),
            Message::PingReq {
                target: b.clone(),
                probe_number: 4,
            },
            Message::ForwardedAck {
                origin: a.clone(),
                probe_number: 5,
            },
            Message::Gossip,
        ] {
            let header = Header {
                src: a.clone(),
                src_incarnation: 2,
                dst: b.clone(),
                message,
            };
            let mut ours = Vec::new();
            codec.encode_header(&header, &mut ours).unwrap();
            let old = Header {
                src: plain(&a),
                src_incarnation: 2,
                dst: plain(&b),
                message: match &header.message {
                    Message::PingReq { probe_number, .. } => Message::PingReq {
                        target: plain(&b),
                        probe_number: *probe_number,
                    },
                    Message::ForwardedAck { probe_number, .. } => Message::ForwardedAck {
                        origin: plain(&a),
                        probe_number: *probe_number,
                    },
                    Message::Ping(n) => Message::Ping(*n),
                    _ => Message::Gossip,
                },
            };
            let mut theirs = Vec::new();
            PostcardCodec.encode_header(&old, &mut theirs).unwrap();
            assert_eq!(ours, theirs);
            ours.extend_from_slice(b"rest");
            let mut buf = &ours[..];
            let back = codec.decode_header(&mut buf).unwrap();
            assert_eq!(back, header);
            assert_eq!(buf, b"rest");
            assert!(back.src.same_allocation(&a));
        }
        let m = Member::new(b.clone(), 3, State::Suspect);
        let mut ours = Vec::new();
        codec.encode_member(&m, &mut ours).unwrap();
        let mut theirs = Vec::new();
        PostcardCodec
            .encode_member(&Member::new(plain(&b), 3, State::Suspect), &mut theirs)
            .unwrap();
        assert_eq!(ours, theirs);
        let back = codec.decode_member(&ours[..]).unwrap();
        assert_eq!(back, m);
        assert!(back.id().same_allocation(&b));
        // Too little room: the same failed write as foca's codec.
        let (mut small, mut theirs) = ([0u8; 4], [0u8; 4]);
        assert!(codec.encode_member(&m, &mut &mut small[..]).is_err());
        let plain_m = Member::new(plain(&b), 3, State::Suspect);
        assert!(PostcardCodec
            .encode_member(&plain_m, &mut &mut theirs[..])
            .is_err());
        assert_eq!(small, theirs);
    }

    #[test]
    fn refuses_bad_names_and_future_generations() {
        let mut codec = SwimCodec::new(Shared::new(1));
        let enc = |name: &str, generation| {
            let mut v = Vec::new();
            let m = Member::new(
                Plain {
                    name: name.into(),
                    addr: "10.0.0.1:1".parse().unwrap(),
                    generation,
                },
                0,
                State::Alive,
            );
            PostcardCodec.encode_member(&m, &mut v).unwrap();
            v
        };
        assert!(codec.decode_member(&enc("a b", 1)[..]).is_err());
        assert!(codec.decode_member(&enc("ok", 500)[..]).is_ok());
        codec.max_generation = 100;
        assert!(codec.decode_member(&enc("ok", 500)[..]).is_err());
        assert!(codec.decode_member(&enc("ok", 100)[..]).is_ok());
    }
}
