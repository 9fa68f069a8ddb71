//! A key store on, or encrypted by, a PKCS#11 hardware security module.
//!
//! The layout is Bank-Vaults' (`pkg/kv/hsm/hsm.go` in bank-vaults/bank-vaults), so that
//! either operator reads the keys the other wrote. Values are encrypted with the RSA key
//! pair labelled `keyLabel` (CKM_RSA_PKCS, PKCS#1 v1.5; a 2048-bit pair is generated on the
//! device when neither half exists). The ciphertext is kept either on the device, as a data
//! object labelled with the key's name ([`Pkcs11KeyStore::from_spec`]), or in another store
//! ([`Pkcs11KeyStore::encrypting`]) as raw bytes where that store holds bytes (a Kubernetes
//! Secret, as Bank-Vaults keeps them) and in standard base64 where it holds text.
//!
//! PKCS#11 calls block, so each runs on Tokio's blocking threads, one at a time per store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use tracing::info;
use zeroize::Zeroizing;

use crate::{KeyStore, KeyStoreError, Secret};

/// A key store on a PKCS#11 device, or in another store with values encrypted by the
/// device; see the [module documentation](self) for the layout.
pub struct Pkcs11KeyStore {
    device: Arc<Device>,
    /// Where the ciphertext is kept: on the device when `None`.
    inner: Option<Box<dyn KeyStore>>,
}

/// An open, logged-in session on one token, and the key pair that encrypts.
struct Device {
    /// Names the token and key in messages.
    name: String,
    session: Mutex<Session>,
    public_key: ObjectHandle,
    private_key: ObjectHandle,
}

impl Pkcs11KeyStore {
    /// A store that keeps each encrypted value on the device, as a private token object.
    /// Opening the token, logging in and (the first time) making the key pair run on a
    /// blocking thread. The session stays open for the store's life: a store whose device
    /// was reset must be opened again.
    pub async fn from_spec(spec: &vault_api::unseal::HsmKeyStore) -> Result<Self, KeyStoreError> {
        Ok(Self {
            device: Arc::new(open_device(spec).await?),
            inner: None,
        })
    }

    /// A store that encrypts each value with the device's key and keeps it in `inner`,
    /// such as the Kubernetes Secret when `unsealConfig.kubernetes` is set too.
    pub async fn encrypting(
        spec: &vault_api::unseal::HsmKeyStore,
        inner: Box<dyn KeyStore>,
    ) -> Result<Self, KeyStoreError> {
        Ok(Self {
            device: Arc::new(open_device(spec).await?),
            inner: Some(inner),
        })
    }

    /// Runs `step` on the device's session on a blocking thread.
    async fn on_device<T, F>(
        &self,
        operation: &'static str,
        key: &str,
        step: F,
    ) -> Result<T, KeyStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Session, &Device) -> Result<T, String> + Send + 'static,
    {
        let device = Arc::clone(&self.device);
        let result = tokio::task::spawn_blocking(move || {
            let session = device
                .session
                .lock()
                .map_err(|_| "an earlier call on the session panicked".to_string())?;
            step(&session, &device)
        })
        .await
        .unwrap_or_else(|error| Err(format!("the PKCS#11 call did not finish: {error}")));
        result.map_err(|reason| KeyStoreError::Backend {
            store: self.describe(),
            operation,
            key: key.to_string(),
            reason,
        })
    }
}

/// [`Device::open`] on a blocking thread.
async fn open_device(spec: &vault_api::unseal::HsmKeyStore) -> Result<Device, KeyStoreError> {
    let owned = spec.clone();
    tokio::task::spawn_blocking(move || Device::open(&owned))
        .await
        .unwrap_or_else(|error| {
            Err(KeyStoreError::Backend {
                store: format!("HSM {}", spec.module_path.as_deref().unwrap_or_default()),
                operation: "opening",
                key: spec.key_label.clone().unwrap_or_default(),
                reason: format!("the PKCS#11 calls did not finish: {error}"),
            })
        })
}

impl Device {
    /// Opens the token `spec` names, logs in and finds (or makes) the key pair.
    fn open(spec: &vault_api::unseal::HsmKeyStore) -> Result<Self, KeyStoreError> {
        let module = spec.module_path.as_deref().unwrap_or_default();
        let key_label = spec.key_label.as_deref().unwrap_or_default();
        let name = format!("HSM {module}");
        let refuse = |operation: &'static str, reason: String| KeyStoreError::Backend {
            store: name.clone(),
            operation,
            key: key_label.to_string(),
            reason,
        };
        if module.is_empty() {
            return Err(refuse("configuring", "modulePath is required".to_string()));
        }
        if key_label.is_empty() {
            return Err(refuse("configuring", "keyLabel is required".to_string()));
        }

        let pkcs11 = loaded_module(module).map_err(|reason| refuse("loading", reason))?;
        let (slot, token) =
            find_slot(&pkcs11, spec).map_err(|reason| refuse("finding the token", reason))?;
        let name = format!("HSM token {token:?} (slot {})", slot.id());
        let refuse = |operation: &'static str, reason: String| KeyStoreError::Backend {
            store: name.clone(),
            operation,
            key: key_label.to_string(),
            reason,
        };

        let session = pkcs11
            .open_rw_session(slot)
            .map_err(|error| refuse("opening a session", error.to_string()))?;
        let pin = AuthPin::new(spec.pin.clone().unwrap_or_default().into());
        // Login is per token and process: another store on the token may have done it.
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            // The error names the PKCS#11 code only; the PIN is never part of it.
            Err(error) => return Err(refuse("logging in", error.to_string())),
        }
        let (public_key, private_key) = key_pair(&session, key_label)
            .map_err(|reason| refuse("finding the key pair", reason))?;
        Ok(Self {
            name: format!("{name} key {key_label:?}"),
            session: Mutex::new(session),
            public_key,
            private_key,
        })
    }

    fn encrypt(&self, session: &Session, value: &Secret) -> Result<Vec<u8>, String> {
        session
            .encrypt(
                &Mechanism::RsaPkcs,
                self.public_key,
                value.expose().as_bytes(),
            )
            .map_err(|error| format!("encrypting: {error}"))
    }

    fn decrypt(&self, session: &Session, ciphertext: &[u8]) -> Result<Secret, String> {
        let plain = session
            .decrypt(&Mechanism::RsaPkcs, self.private_key, ciphertext)
            .map(Zeroizing::new)
            .map_err(|error| format!("decrypting: {error}"))?;
        Secret::from_bytes(plain.to_vec()).ok_or_else(|| "the value is not UTF-8".to_string())
    }
}

/// The module at `path`, loaded and initialised once per process. Modules keep their state
/// per process: initialising one twice at once, or unloading it while another store still
/// runs, loses the sessions that are open.
fn loaded_module(path: &str) -> Result<Pkcs11, String> {
    static MODULES: Mutex<BTreeMap<String, Pkcs11>> = Mutex::new(BTreeMap::new());
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(module) = modules.get(path) {
        return Ok(module.clone());
    }
    let module = Pkcs11::new(path).map_err(|error| error.to_string())?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(error) => return Err(format!("initialising: {error}")),
    }
    modules.insert(path.to_string(), module.clone());
    Ok(module)
}

/// The slot of the token labelled `tokenLabel`, or else slot `slotId`, and its label.
fn find_slot(
    pkcs11: &Pkcs11,
    spec: &vault_api::unseal::HsmKeyStore,
) -> Result<(Slot, String), String> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|error| error.to_string())?;
    let wanted_label = spec
        .token_label
        .as_deref()
        .filter(|label| !label.is_empty());
    for slot in slots {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(|error| error.to_string())?;
        let label = info.label().trim_end().to_string();
        let found = match wanted_label {
            Some(wanted) => label == wanted,
            None => spec.slot_id.and_then(|id| u64::try_from(id).ok()) == Some(slot.id()),
        };
        if found {
            return Ok((slot, label));
        }
    }
    Err(match wanted_label {
        Some(label) => format!("no token labelled {label:?}"),
        None => format!(
            "no token in slot {:?}: set slotId or tokenLabel",
            spec.slot_id
        ),
    })
}

/// The RSA key pair labelled `label`, made on the device when neither half exists.
fn key_pair(session: &Session, label: &str) -> Result<(ObjectHandle, ObjectHandle), String> {
    let find = |class| {
        session
            .find_objects(&[Attribute::Class(class), Attribute::Label(label.into())])
            .map_err(|error| error.to_string())
    };
    let public = find(ObjectClass::PUBLIC_KEY)?;
    let private = find(ObjectClass::PRIVATE_KEY)?;
    match (public.first(), private.first()) {
        (Some(public), Some(private)) => Ok((*public, *private)),
        (None, None) => {
            info!(label, "generating an RSA key pair on the HSM");
            let public_template = [
                Attribute::Token(true),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Encrypt(true),
                Attribute::Verify(true),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::ModulusBits(2048.into()),
                Attribute::Label(label.into()),
            ];
            let private_template = [
                Attribute::Token(true),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Decrypt(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Label(label.into()),
            ];
            session
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &public_template,
                    &private_template,
                )
                .map_err(|error| format!("generating: {error}"))
        }
        _ => Err("only one half of the key pair exists".to_string()),
    }
}

/// The data objects labelled `key`.
fn data_objects(session: &Session, key: &str) -> Result<Vec<ObjectHandle>, String> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(key.into()),
        ])
        .map_err(|error| error.to_string())
}

#[async_trait]
impl KeyStore for Pkcs11KeyStore {
    fn describe(&self) -> String {
        match &self.inner {
            Some(inner) => format!("{} encrypted by {}", inner.describe(), self.device.name),
            None => self.device.name.clone(),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Secret>, KeyStoreError> {
        if let Some(inner) = &self.inner {
            let Some(stored) = inner.get_bytes(key).await? else {
                return Ok(None);
            };
            // Versions of this operator before raw bytes kept the ciphertext as base64 text.
            // Raw RSA ciphertext is random bytes, which are never all base64 characters.
            let ciphertext = match std::str::from_utf8(&stored) {
                Ok(text) => STANDARD.decode(text.trim()).unwrap_or(stored),
                Err(_) => stored,
            };
            let value = self
                .on_device("decrypting", key, move |session, device| {
                    device.decrypt(session, &ciphertext)
                })
                .await?;
            return Ok(Some(value));
        }

        let name = key.to_string();
        self.on_device("reading", key, move |session, device| {
            let Some(object) = data_objects(session, &name)?.first().copied() else {
                return Ok(None);
            };
            let attributes = session
                .get_attributes(object, &[AttributeType::Value])
                .map_err(|error| error.to_string())?;
            let ciphertext = attributes
                .into_iter()
                .find_map(|attribute| match attribute {
                    Attribute::Value(bytes) => Some(bytes),
                    _ => None,
                });
            let ciphertext = ciphertext.ok_or_else(|| "the object has no value".to_string())?;
            device.decrypt(session, &ciphertext).map(Some)
        })
        .await
    }

    async fn set(&self, key: &str, value: &Secret) -> Result<(), KeyStoreError> {
        let plain = value.clone();
        if let Some(inner) = &self.inner {
            let ciphertext = self
                .on_device("encrypting", key, move |session, device| {
                    device.encrypt(session, &plain)
                })
                .await?;
            return inner.set_bytes(key, &ciphertext).await;
        }

        let name = key.to_string();
        self.on_device("writing", key, move |session, device| {
            let ciphertext = device.encrypt(session, &plain)?;
            // The new object first, then the old ones, so that a crash in between leaves a
            // value to read.
            let old = data_objects(session, &name)?;
            let template = [
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(name.as_bytes().to_vec()),
                Attribute::Value(ciphertext),
            ];
            session
                .create_object(&template)
                .map_err(|error| error.to_string())?;
            for object in old {
                session
                    .destroy_object(object)
                    .map_err(|error| format!("removing the old value: {error}"))?;
            }
            Ok(())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        if let Some(inner) = &self.inner {
            return inner.list().await;
        }
        self.on_device("listing", "", |session, _| {
            let objects = session
                .find_objects(&[Attribute::Class(ObjectClass::DATA)])
                .map_err(|error| error.to_string())?;
            let mut names = Vec::new();
            for object in objects {
                let attributes = session
                    .get_attributes(object, &[AttributeType::Label])
                    .map_err(|error| error.to_string())?;
                for attribute in attributes {
                    if let Attribute::Label(label) = attribute {
                        names.push(String::from_utf8_lossy(&label).into_owned());
                    }
                }
            }
            names.sort();
            names.dedup();
            Ok(names)
        })
        .await
    }
}
